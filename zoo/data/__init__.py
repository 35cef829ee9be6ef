"""DataModules, one per kind of input, and the offline built-in datasets."""

from zoo.data import builtin_images  # noqa: F401  (registers built-in image datasets)
from zoo.data.image import ImageDataError, ImageDataModule

__all__ = ["ImageDataError", "ImageDataModule"]
from zoo.data import recsys  # noqa: E402,F401  (registers the interactions datamodule and ml-100k)
