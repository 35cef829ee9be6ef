"""Training techniques and run reporting as Lightning callbacks."""

from zoo.callbacks import progress, scale, tracking  # noqa: F401  (register throughput, compile, W&B callbacks)
from zoo.callbacks.base import TechniqueNotApplicableError, ZooTechnique
from zoo.callbacks.reporting import PredictionWriter, RunReport

__all__ = ["PredictionWriter", "RunReport", "TechniqueNotApplicableError", "ZooTechnique"]
