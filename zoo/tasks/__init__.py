"""Task modules (LightningModules implementing the zoo contract)."""

from zoo.tasks.base import CheckpointMismatchError, ZooTask, load_checkpoint
from zoo.tasks.classification import ClassDataMismatchError, ClassificationTask
from zoo.tasks.image import ImageClassifier
from zoo.tasks.text import TextClassifier, TokenClassifier

__all__ = [
    "CheckpointMismatchError",
    "ClassDataMismatchError",
    "ClassificationTask",
    "ImageClassifier",
    "TextClassifier",
    "TokenClassifier",
    "ZooTask",
    "load_checkpoint",
]
from zoo.tasks import recsys  # noqa: E402,F401  (registers the recommenders)
