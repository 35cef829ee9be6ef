"""Recommenders, one file per model; all share :class:`RecommenderTask`."""

from zoo.tasks.recsys.base import RecommenderTask, RecsysModelError
from zoo.tasks.recsys.bpr import BPR

__all__ = ["BPR", "RecommenderTask", "RecsysModelError"]
