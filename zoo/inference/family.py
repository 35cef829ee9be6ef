"""The export and serving contract: one registered :class:`Family` per kind of task, as ``ZooTask`` is the
training contract.

A family knows, for every model of its kind,

* at export (:func:`zoo.export.export_model`): the graph's named inputs and sample batches from the run's data
  (:meth:`Family.describe` -> :class:`ExportSpec`), its section of ``zoo_export.json`` (``ExportSpec.meta``), the
  files the predictor needs beside the graph (:meth:`Family.write_assets`), and the function compared with the
  exported artefact (:meth:`Family.graph`, the rows compared: ``ExportSpec.mask_input``);
* at serving (:class:`zoo.inference.Predictor`, ``zoo serve``): how to read one request (:meth:`Family.parse`,
  raising :class:`~zoo.inference.requests.InferenceInputError` naming the field), batch parsed requests into the
  graph's inputs (:meth:`Family.collate`) and shape the graph's output into answers (:meth:`Family.answers`).

A task class names its family with the class attribute ``export_family``; :func:`family_of` finds it through the
open registry :data:`FAMILIES`, so a new family is one module with a ``@register_family`` class and one line on
its task class, and zoo's export, verification and server need no edit. A family installed by another package
is found through the ``zoo.families`` entry-point group (``name = "package.module:FamilyClass"``).

Models and datamodules reach this module only as objects passed in (duck-typed), so the inference layer never
imports zoo's tasks, data or Lightning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from zoo.errors import ZooError

ENTRY_POINT_GROUP = "zoo.families"


class FamilyError(ZooError, ValueError):
    """A model, export folder or registration no family answers for; the message names what was expected."""


@dataclass
class ExportSpec:
    """What one export holds, from :meth:`Family.describe`."""

    #: the graph's input tensors, in call order
    inputs: list[str]
    #: per input (and ``output``): axis -> name of the dynamic axis (``batch``, ``sequence``)
    dynamic: dict[str, dict[int, str]]
    #: this family's section of ``zoo_export.json`` (``labels``, ``preprocessing``, ...)
    meta: dict[str, Any]
    #: batches of the graph's inputs from the run's data, verified on (the first is traced)
    samples: list[dict[str, Tensor]] = field(default_factory=list)
    #: the largest sequence axis, for ``torch.export``'s dynamic dimension
    max_sequence: int | None = None
    #: what is exported instead of the model's own function (a recommender's tables), when not None
    scorer: nn.Module | None = None
    #: per sample batch, the raw requests it was made from: verification then also runs the folder's own
    #: preprocessing (:meth:`Family.parse` / :meth:`Family.collate`) on them
    raw: list[list[Any]] = field(default_factory=list)
    #: the input whose non-zero positions are the rows compared in verification (a tagger's attention mask)
    mask_input: str | None = None
    #: objects :meth:`Family.write_assets` writes beside the graph (a tokenizer, lookup tables, a featuriser)
    assets: dict[str, Any] = field(default_factory=dict)


class Graph(nn.Module):
    """The exported function of a classifier: positional tensors (in ``names`` order) -> ``model(batch)``."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *tensors: Tensor) -> Tensor:
        return self.model(dict(zip(self.names, tensors)))


class Family:
    """Base of every family. Subclasses set :attr:`name` / :attr:`task` and implement :meth:`describe`,
    :meth:`parse`, :meth:`collate` and :meth:`answers`; the rest has defaults."""

    #: registry key, recorded as ``family`` in ``zoo_export.json``
    name: ClassVar[str] = ""
    #: the kind of task a client sees (``task`` in ``zoo_export.json`` and ``/info``)
    task: ClassVar[str] = ""
    #: one line for ``zoo list families``: what a request holds and what the answer is
    summary: ClassVar[str] = ""

    # -- export: class methods over a bound model and its datamodule ------------------------------------------
    @classmethod
    def describe(cls, model: Any, datamodule: Any, samples: int) -> ExportSpec:
        raise NotImplementedError

    @classmethod
    def graph(cls, model: nn.Module, inputs: list[str]) -> nn.Module:
        """The eager function the export captures and is verified against: by default ``model(batch)``."""
        return Graph(model, inputs)

    @classmethod
    def write_assets(cls, spec: ExportSpec, folder: Path) -> dict[str, str]:
        """Write ``spec.assets`` into ``folder``; returns the ``files`` entries of ``zoo_export.json``."""
        return {}

    @classmethod
    def asset_versions(cls) -> dict[str, str]:
        """Versions of the libraries the assets need to be read as written (recorded in ``versions``)."""
        return {}

    # -- serving: an instance per loaded export folder ---------------------------------------------------------
    def __init__(self, folder: Path, manifest: Any) -> None:
        # manifest: the folder's zoo.inference.manifest.Manifest (untyped here: that module reads this registry)
        self.folder, self.meta = Path(folder), manifest
        self.pre: dict[str, Any] = manifest.preprocessing

    def parse(self, item: Any) -> Any:
        """One request -> a parsed item; a bad request raises ``InferenceInputError`` naming the field."""
        raise NotImplementedError

    def parse_many(self, items: list[Any]) -> list[Any]:
        """:meth:`parse` over a batch of requests: one parsed item, or the ``InferenceInputError`` it raised,
        per request (a family whose preprocessing is cheaper per batch, as a fast tokenizer is, overrides it)."""
        from zoo.inference.requests import InferenceInputError

        out: list[Any] = []
        for item in items:
            try:
                out.append(self.parse(item))
            except InferenceInputError as err:
                out.append(err)
        return out

    def collate(self, items: list[Any]) -> dict[str, Tensor]:
        """Parsed items -> the graph's named inputs."""
        raise NotImplementedError

    def logits(self, out: Tensor, items: list[Any]) -> Tensor:
        """One row of the graph's output per item (a family that runs several sequences per item joins them)."""
        return out

    def answers(self, out: Tensor | None, items: list[Any], temperature: Tensor) -> list[dict[str, Any]]:
        """The graph's output (None when no item needed the graph) -> one JSON-able answer per item."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """Fields this family adds to ``/info``."""
        return {}


class FamilyRegistry:
    """The open list of families, by name; later registrations of a name are refused (say ``replace=True``)."""

    def __init__(self) -> None:
        self._families: dict[str, type[Family]] = {}

    def register(self, cls: type[Family], *, replace: bool = False) -> type[Family]:
        if not (isinstance(cls, type) and issubclass(cls, Family)) or not cls.name or not cls.task:
            raise FamilyError(f"{cls!r}: a family is a Family subclass with a non-empty name and task")
        if cls.name in self._families and self._families[cls.name] is not cls and not replace:
            raise FamilyError(f"family {cls.name!r} is registered already ({self._families[cls.name].__qualname__})")
        self._families[cls.name] = cls
        return cls

    def unregister(self, name: str) -> None:
        self._families.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._families

    def __iter__(self) -> Iterator[str]:
        return iter(self._families)

    def __len__(self) -> int:
        return len(self._families)

    def get(self, name: str) -> type[Family]:
        """The family called ``name``: registered in this process, else installed as a ``zoo.families`` entry
        point (loaded and registered on first use)."""
        if name not in self._families:
            self._load_entry_point(name)
        if name not in self._families:
            raise FamilyError(f"no export family {name!r} in this process (registered: {', '.join(self)}); "
                              f"import the module that registers it, or install it under the "
                              f"'{ENTRY_POINT_GROUP}' entry-point group")
        return self._families[name]

    def _load_entry_point(self, name: str) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
            cls = ep.load()
            if isinstance(cls, type) and issubclass(cls, Family) and cls.name == name:
                self.register(cls, replace=True)
                return
            raise FamilyError(f"entry point {ep.value!r} ({ENTRY_POINT_GROUP}: {name}) is not a Family named {name!r}")


FAMILIES = FamilyRegistry()


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: add a family to :data:`FAMILIES`."""
    return FAMILIES.register(cls)


def family_of(model: Any) -> type[Family]:
    """The family a model exports through: the one its class names in ``export_family``."""
    name = getattr(type(model), "export_family", None)
    if not name:
        raise FamilyError(f"{type(model).__name__} names no export family (a class attribute export_family, one of "
                          f"{', '.join(FAMILIES)}); zoo export and zoo serve handle models whose class does")
    return FAMILIES.get(str(name))


def sample_batches(datamodule: Any, names: list[str], limit: int, raw_key: str | None = None,
                   raw: list[list[Any]] | None = None) -> list[dict[str, Tensor]]:
    """Up to ``limit`` rows of the datamodule's test (else validation) batches, as the graph's ``names``, and a
    second batch shape (3 rows, trailing padding cut) so verification catches a graph that kept the traced
    batch or sequence size. Each batch's ``raw_key`` (raw texts) goes to ``raw`` when given."""
    loader = None
    for getter in ("test_dataloader", "val_dataloader"):
        try:
            loader = getattr(datamodule, getter)()
            break
        except Exception:  # a datamodule without that split: try the next one
            continue
    if loader is None:
        raise FamilyError(f"{type(datamodule).__name__} yields no test or validation batches to verify the export on")
    out, seen = [], 0
    for batch in loader:
        feeds = {n: batch[n] for n in names if isinstance(batch.get(n), Tensor)}
        out.append(feeds)
        if raw is not None and raw_key is not None:
            raw.append(list(batch[raw_key]))
        seen += len(next(iter(feeds.values())))
        if seen >= limit:
            break
    if out:
        first = {n: t[:3] for n, t in out[0].items()}
        mask = first.get("attention_mask")
        if mask is not None:
            width = max(2, int(mask.sum(1).max()))
            first = {n: t[:, :width] for n, t in first.items()}
        out.append(first)
        if raw is not None and raw_key is not None:
            raw.append(raw[0][:3])
    return out


def output_axes(names: list[str], per_input: dict[int, str], output: dict[int, str]) -> dict[str, dict[int, str]]:
    """The ``dynamic`` axes of an :class:`ExportSpec`: the same axes on every input, and the output's."""
    axes = {n: dict(per_input) for n in names}
    axes["output"] = dict(output)
    return axes


__all__ = ["ENTRY_POINT_GROUP", "FAMILIES", "ExportSpec", "Family", "FamilyError", "FamilyRegistry", "Graph",
           "family_of", "output_axes", "register_family", "sample_batches"]
