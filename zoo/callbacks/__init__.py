"""Training techniques and run reporting as Lightning callbacks."""

from zoo.callbacks.base import TechniqueNotApplicableError, ZooTechnique
from zoo.callbacks.reporting import PredictionWriter, RunReport

__all__ = ["PredictionWriter", "RunReport", "TechniqueNotApplicableError", "ZooTechnique"]
