"""One registry per kind of thing (models, backbones, datasets, callbacks), timm style.

``register`` is a decorator; ``create`` builds by name; ``list`` filters names with a glob pattern.
An unknown name raises ``UnknownNameError`` that lists the close matches and where to look.

The built-in entries register themselves when their modules are imported. This module sits at the bottom of the
layers and does not know them: the top-level package (``zoo/__init__.py``, above every layer) hands
:func:`on_first_lookup` the function that imports them, and the first look-up in any registry runs it, so
``import zoo`` stays free of torch and every import edge is one the import-linter sees.
"""

from __future__ import annotations

import difflib
import fnmatch
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
        _load_builtins()
        return name in self._entries

    def entry(self, name: str) -> Entry:
        _load_builtins()
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
        _load_builtins()
        names = [n for n, e in self._entries.items() if fnmatch.fnmatch(n, pattern) and (tag is None or tag in e.tags)]
        return sorted(names)

    def entries(self) -> list[Entry]:
        _load_builtins()
        return [self._entries[n] for n in sorted(self._entries)]


MODELS = Registry("model")
BACKBONES = Registry("backbone")
DATASETS = Registry("dataset")
CALLBACKS = Registry("callback")
DATAMODULES = Registry("datamodule")

_builtin_loaders: list[Callable[[], None]] = []
_loaded = False


def on_first_lookup(load: Callable[[], None]) -> None:
    """Run ``load`` (a function that imports the modules registering built-in entries) before the first look-up
    in any registry; right away if a look-up already happened."""
    _builtin_loaders.append(load)
    if _loaded:
        load()


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True  # before loading: a look-up while the built-ins register sees what is there so far
    for load in list(_builtin_loaders):
        load()


# The module-level shortcuts are the registries' own bound methods, e.g.
# ``create_model("image_classifier", backbone="small_cnn", num_classes=10)`` or ``list_models("resnet*")``.
create_model, list_models = MODELS.create, MODELS.list
create_backbone, list_backbones = BACKBONES.create, BACKBONES.list
create_dataset, list_datasets = DATASETS.create, DATASETS.list
create_callback, list_callbacks = CALLBACKS.create, CALLBACKS.list
