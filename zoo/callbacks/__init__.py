"""Run infrastructure as Lightning callbacks: reports, predictions, tracking, progress, early stopping, compile.

Training techniques (adversarial training, mixup, distillation, ...) live in :mod:`zoo.techniques`.
"""

from zoo.callbacks.compile import TorchCompile
from zoo.callbacks.early_stopping import EarlyStoppingNotice, TaskEarlyStopping
from zoo.callbacks.prediction_writer import PredictionWriter
from zoo.callbacks.progress import ZooProgressBar
from zoo.callbacks.run_report import RunReport
from zoo.callbacks.tracking import Throughput, WandbLogger, WandbReports

__all__ = ["EarlyStoppingNotice", "PredictionWriter", "RunReport", "TaskEarlyStopping", "Throughput", "TorchCompile",
           "WandbLogger", "WandbReports", "ZooProgressBar"]
