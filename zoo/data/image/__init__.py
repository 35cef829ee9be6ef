"""Image data: ``ImageDataModule`` reads images from an ImageFolder directory, a CSV of ``path,label`` or a
built-in dataset, and feeds float tensors in [0, 1] (the model normalises) after optional augmentations.

Where things are: ``readers`` (folder / CSV / built-in indexing, decoding files), ``transforms`` (resize and
augmentations by torchvision v2 name), ``dataset`` (``ImageSet``), ``datamodule`` (``ImageDataModule``),
``builtin`` (the offline datasets). Every public name is importable from ``zoo.data.image``.
"""

from zoo.data.image import builtin  # noqa: F401  (registers the built-in datasets)
from zoo.data.image.builtin import ArrayImageSet, DatasetUnavailableError
from zoo.data.image.datamodule import ImageDataModule
from zoo.data.image.dataset import ImageSet
from zoo.data.image.readers import IMAGE_SUFFIXES, ImageDataError, ImageIndex, load_image_file
from zoo.data.image.transforms import AugmentSpec, build_augmentations, image_transform

__all__ = [
    "IMAGE_SUFFIXES", "ArrayImageSet", "AugmentSpec", "DatasetUnavailableError", "ImageDataError", "ImageDataModule",
    "ImageIndex", "ImageSet", "build_augmentations", "image_transform", "load_image_file",
]
