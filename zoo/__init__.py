"""zoo: a model zoo on PyTorch Lightning.

Tasks share one contract (``embed`` -> ``forward_embedded`` -> ``task_loss``, :mod:`zoo.contract`) so every
training technique (:mod:`zoo.techniques`) works on every task. The main classes are importable from here::

    from zoo import ImageClassifier, ImageDataModule, FGM
    import zoo
    zoo.list_models()
    model = zoo.create_model("image_classifier", backbone="small_cnn", num_classes=10, in_channels=1)

Names other than the registry functions are imported on first use, so ``import zoo`` (and ``zoo --help``) does
not pay for torch, Lightning or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

from zoo import registry as _registry
from zoo.registry import (
    create_backbone,
    create_callback,
    create_dataset,
    create_model,
    list_backbones,
    list_callbacks,
    list_datasets,
    list_models,
)
from zoo.version import __version__

#: public name -> the module that defines (or re-exports) it; resolved lazily by ``__getattr__``
_LAZY: dict[str, str] = {
    # the contract
    "ZooTaskProtocol": "zoo.contract",
    "ZooTechnique": "zoo.contract",
    "contract_training_step": "zoo.contract",
    "TechniqueNotApplicableError": "zoo.contract",
    "load_checkpoint": "zoo.checkpoints",
    "CheckpointMismatchError": "zoo.checkpoints",
    "ZooError": "zoo.errors",
    "ConfigError": "zoo.errors",
    # tasks
    "ZooTask": "zoo.tasks.base",
    "ClassificationTask": "zoo.tasks.classification",
    "ImageClassifier": "zoo.tasks.image",
    "TextClassifier": "zoo.tasks.text",
    "FastTextClassifier": "zoo.tasks.text",
    "TfidfClassifier": "zoo.tasks.text",
    "TokenClassifier": "zoo.tasks.text",
    "CRFTagger": "zoo.tasks.text",
    "RecommenderTask": "zoo.tasks.recsys",
    "BPR": "zoo.tasks.recsys",
    "LightGCN": "zoo.tasks.recsys",
    "NeuMF": "zoo.tasks.recsys",
    "SASRec": "zoo.tasks.recsys",
    "TwoTower": "zoo.tasks.recsys",
    "TextAwareRecommender": "zoo.tasks.recsys",
    # data
    "ImageDataModule": "zoo.data.image",
    "TextDataModule": "zoo.data.text",
    "NgramTextDataModule": "zoo.data.text",
    "TokenDataModule": "zoo.data.text",
    "InteractionDataModule": "zoo.data.recsys",
    # techniques
    "FGM": "zoo.techniques",
    "PGD": "zoo.techniques",
    "FreeLB": "zoo.techniques",
    "SMART": "zoo.techniques",
    "RDrop": "zoo.techniques",
    "Mixup": "zoo.techniques",
    "CutMix": "zoo.techniques",
    "L2SP": "zoo.techniques",
    "EMA": "zoo.techniques",
    "Distillation": "zoo.techniques",
    "AdversarialEvaluation": "zoo.techniques",
    # run infrastructure
    "RunReport": "zoo.callbacks",
    "PredictionWriter": "zoo.callbacks",
    "TaskEarlyStopping": "zoo.callbacks",
}


def _register_builtins() -> None:
    """Import the modules whose import registers zoo's built-in models, backbones, datasets, datamodules and
    callbacks. The registries run this on their first look-up: they sit at the bottom of the layers and may not
    import these themselves, while this package, above every layer, may. Text and recsys pull their optional
    extras lazily inside their builders, so this stays cheap."""
    import zoo.backbones
    import zoo.callbacks
    import zoo.data
    import zoo.tasks
    import zoo.techniques  # noqa: F401


_registry.on_first_lookup(_register_builtins)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "create_backbone",
    "create_callback",
    "create_dataset",
    "create_model",
    "list_backbones",
    "list_callbacks",
    "list_datasets",
    "list_models",
    *_LAZY,
]
