"""DataModules, one per kind of input, and the offline built-in datasets.

``zoo.data.text`` (text and token classification), ``zoo.data.image``, ``zoo.data.recsys``; shared pieces:
``zoo.data.splits`` (seeded train / val / test splits, ``max_samples`` subsets), ``zoo.data.files`` (reading user
files with clear errors), ``zoo.data.distributed`` (evaluation samplers under DDP).
"""

from zoo.data import recsys  # noqa: F401  (registers built-in datasets; text and image register on import)
from zoo.data.files import DataFileError
from zoo.data.image import ImageDataError, ImageDataModule
from zoo.data.text import TextDataError, TextDataModule, TokenDataModule

__all__ = ["DataFileError", "ImageDataError", "ImageDataModule", "TextDataError", "TextDataModule", "TokenDataModule"]
