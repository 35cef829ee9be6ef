"""Backbones by registry name."""

from zoo.backbones import text, vision  # noqa: F401  (registers the backbones)
from zoo.backbones.vision import create_vision_backbone

__all__ = ["create_vision_backbone"]
