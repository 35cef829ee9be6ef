"""Training techniques and run reporting as Lightning callbacks."""

from zoo.callbacks import progress, scale, tracking  # noqa: F401  (register throughput, compile, W&B callbacks)
from zoo.callbacks.adversarial import FGM, PGD, SMART, AdversarialEvaluation, FreeLB, TechniqueConfigError
from zoo.callbacks.base import TechniqueNotApplicableError, ZooTechnique
from zoo.callbacks.distillation import Distillation, TeacherMismatchError
from zoo.callbacks.early_stopping import TaskEarlyStopping
from zoo.callbacks.regularization import EMA, L2SP, CutMix, Mixup, RDrop
from zoo.callbacks.reporting import PredictionWriter, RunReport

__all__ = ["EMA", "FGM", "L2SP", "PGD", "SMART", "AdversarialEvaluation", "CutMix", "Distillation", "FreeLB",
           "Mixup", "PredictionWriter", "RDrop", "RunReport", "TaskEarlyStopping", "TeacherMismatchError",
           "TechniqueConfigError", "TechniqueNotApplicableError", "ZooTechnique"]
