"""One registry per kind of thing (models, backbones, datasets, callbacks), timm style.

``register`` is a decorator; ``create`` builds by name; ``list`` filters names with a glob pattern.
An unknown name raises ``UnknownNameError`` that lists the close matches and where to look.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError


class UnknownNameError(ZooError, KeyError):
    """A name that is not in a registry; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


@dataclass
class Entry:
    name: str
    fn: Callable[..., Any]
    summary: str = ""
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str | None = None, *, summary: str = "", tags: tuple[str, ...] = (), **meta: Any):
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            key = name or getattr(fn, "__name__", None)
            if not key:
                raise ValueError(f"cannot register an unnamed {self.kind}")
            if key in self._entries and self._entries[key].fn is not fn:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            doc_lines = (fn.__doc__ or "").strip().splitlines()
            self._entries[key] = Entry(key, fn, summary or (doc_lines[0] if doc_lines else ""), tags, meta)
            return fn

        return deco

    def __contains__(self, name: str) -> bool:
        _import_builtins()
        return name in self._entries

    def entry(self, name: str) -> Entry:
        _import_builtins()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=5, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} `zoo list {self.kind}s` shows all {len(self._entries)}."
            ) from None

    def get(self, name: str) -> Callable[..., Any]:
        return self.entry(name).fn

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def list(self, pattern: str = "*", tag: str | None = None) -> list[str]:
        _import_builtins()
        names = [n for n, e in self._entries.items() if fnmatch.fnmatch(n, pattern) and (tag is None or tag in e.tags)]
        return sorted(names)

    def entries(self) -> list[Entry]:
        _import_builtins()
        return [self._entries[n] for n in sorted(self._entries)]


MODELS = Registry("model")
BACKBONES = Registry("backbone")
DATASETS = Registry("dataset")
CALLBACKS = Registry("callback")
DATAMODULES = Registry("datamodule")

# Modules whose import registers the built-in entries. Text and recsys pull optional extras lazily inside
# their builders, so importing them here stays cheap.
_BUILTIN_MODULES = ("zoo.tasks", "zoo.backbones", "zoo.data", "zoo.techniques", "zoo.callbacks")
_imported = False


def _import_builtins() -> None:
    global _imported
    if _imported:
        return
    _imported = True
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


# The module-level shortcuts are the registries' own bound methods, e.g.
# ``create_model("image_classifier", backbone="small_cnn", num_classes=10)`` or ``list_models("resnet*")``.
create_model, list_models = MODELS.create, MODELS.list
create_backbone, list_backbones = BACKBONES.create, BACKBONES.list
create_dataset, list_datasets = DATASETS.create, DATASETS.list
create_callback, list_callbacks = CALLBACKS.create, CALLBACKS.list
