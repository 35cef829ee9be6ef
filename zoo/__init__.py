"""zoo: a model zoo on PyTorch Lightning.

Tasks share one contract (``embed`` -> ``forward_embedded`` -> ``task_loss``) so every training technique
(callback) works on every task. Build things by name with the registry::

    import zoo
    zoo.list_models()
    model = zoo.create_model("image_classifier", backbone="small_cnn", num_classes=10, in_channels=1)
"""

__version__ = "0.1.0"

from zoo.registry import (  # noqa: E402
    create_backbone,
    create_callback,
    create_dataset,
    create_model,
    list_backbones,
    list_callbacks,
    list_datasets,
    list_models,
)


def __getattr__(name: str):
    # lazy access to the main classes keeps `import zoo` light (no torch import until needed)
    lazy = {
        "ZooTask": "zoo.tasks.base",
        "load_checkpoint": "zoo.tasks.base",
        "ClassificationTask": "zoo.tasks.classification",
        "ImageClassifier": "zoo.tasks.image",
        "ImageDataModule": "zoo.data.image",
        "ZooTechnique": "zoo.callbacks.base",
        "RunReport": "zoo.callbacks.reporting",
        "PredictionWriter": "zoo.callbacks.reporting",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


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
]
