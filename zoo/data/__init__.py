"""DataModules, one per kind of input, and the offline built-in datasets."""

from zoo.data import builtin_images, builtin_text, recsys  # noqa: F401  (registers built-in datasets)
from zoo.data.image import ImageDataError, ImageDataModule
from zoo.data.text import TextDataError, TextDataModule, TokenDataModule

__all__ = ["ImageDataError", "ImageDataModule", "TextDataError", "TextDataModule", "TokenDataModule"]
