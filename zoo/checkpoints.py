"""Reading zoo checkpoints safely: which task wrote a file, and loading it with that task's class.

Every load uses ``torch.load(..., weights_only=True)``: zoo checkpoints hold only tensors and plain values, so a
file that needs code to unpickle is refused. Task classes are found by their recorded dotted path at run time,
so this module imports no task (techniques such as distillation load teachers through it). A path read from a file
never imports anything: it names one of zoo's registered classes or a class the running program already imported
(:func:`resolve_class`).
"""

from __future__ import annotations

import importlib
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import torch

from zoo.contract import implements_contract
from zoo.errors import CheckpointError, ZooError
from zoo.version import __version__


class CheckpointMismatchError(ZooError, ValueError):
    """A checkpoint written by another task class, or not by zoo."""


def task_class_path(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def checkpoint_meta(task: Any) -> dict[str, Any]:
    """What every zoo checkpoint records under ``checkpoint["zoo"]``."""
    return {"task": task_class_path(task), "zoo_version": __version__}


#: zoo's own packages whose modules may be imported to find a class a file names (task and data modules, whose
#: import only defines and registers classes); any other module must already be imported by the running program
OWN_PACKAGES = ("zoo.tasks.", "zoo.data.")


def resolve_class(path: str, base: type | None = None) -> type | None:
    """The class a file names by dotted path, or None, importing nothing on the file's word: the path must name a
    class in zoo's own task or data modules (:data:`OWN_PACKAGES`) or in a module the running program already
    imported (the user's code that defined its own task). A checkpoint, ``zoo_export.json``, ensemble manifest or
    run config therefore cannot choose which code runs. With ``base``, only a subclass of it is returned (a file
    may not name ``subprocess.Popen`` as its task)."""
    module, _, name = str(path).rpartition(".")
    parts = [name]
    while module and module not in sys.modules and not module.startswith(OWN_PACKAGES):  # module.Outer.Inner
        module, _, outer = module.rpartition(".")
        parts.insert(0, outer)
    obj: Any = sys.modules.get(module) if module else None
    if obj is None and module.startswith(OWN_PACKAGES):
        try:
            obj = importlib.import_module(module)
        except ImportError:
            return None
    for part in parts:
        if obj is None or not part.isidentifier() or part.startswith("__"):
            return None
        obj = vars(obj).get(part)  # not getattr: a module's lazy __getattr__ would import on the file's word
    if not isinstance(obj, type) or (base is not None and not issubclass(obj, base)):
        return None
    return obj


def resolve_task_class(path: str) -> type | None:
    """The LightningModule a checkpoint or export names, or None (see :func:`resolve_class`: nothing is imported)."""
    import lightning.pytorch as pl

    return resolve_class(path, pl.LightningModule)


def resolve_datamodule_class(path: str) -> type | None:
    """The LightningDataModule a run's config names by dotted path, or None (see :func:`resolve_class`)."""
    import lightning.pytorch as pl

    return resolve_class(path, pl.LightningDataModule)


def _zip_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def peek(path: Any) -> dict[str, Any]:
    """The checkpoint's contents (memory-mapped when it is a zip archive), without building anything; a file that
    cannot be one raises :class:`~zoo.errors.CheckpointError` saying why (missing, empty, truncated, not a
    checkpoint, needs code to unpickle)."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist" if not source.exists()
                              else f"checkpoint {source} is not a file")
    if source.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {source} is empty (0 bytes): the write that made it did not finish")
    zipped = _zip_magic(source)
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as err:
        found = re.search(r"(?:[Uu]nsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(err))
        if found:
            raise CheckpointError(f"checkpoint {source} needs code to unpickle ({found.group(1)}); zoo loads only "
                                  "tensors and plain values, so this file is refused. Use checkpoints written by "
                                  "zoo from a source you trust") from None
        raise CheckpointError(f"{source} is not a checkpoint (not a file written by torch.save)") from None
    except Exception as err:  # torch's unpickler on arbitrary bytes: IndexError, struct.error, EOFError, ...
        if zipped:
            raise CheckpointError(f"checkpoint {source} is truncated or corrupt ({_first_line(err)}); "
                                  "use an earlier checkpoint of the run") from None
        raise CheckpointError(f"{source} is not a checkpoint (not a file written by torch.save)") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{source} is not a checkpoint: it holds a {type(checkpoint).__name__}, not a dict")
    return checkpoint


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__).split(". This is an internal")[0]


def training_position(checkpoint: dict[str, Any]) -> tuple[int, int]:
    """(epoch, global step) a training checkpoint was written at."""
    return int(checkpoint.get("epoch", 0)), int(checkpoint.get("global_step", 0))


def check_checkpoint_task(checkpoint: dict[str, Any], cls: type, source: str) -> None:
    """Refuse a checkpoint written by another task class than ``cls`` (or a subclass of it)."""
    meta = checkpoint.get("zoo")
    if meta is None:
        raise CheckpointMismatchError(f"{source} was not written by zoo (no 'zoo' entry); "
                                      f"expected a {cls.__name__} checkpoint")
    saved = meta.get("task", "?")
    saved_cls = resolve_task_class(saved)
    if saved_cls is None or not issubclass(cls, saved_cls):
        raise CheckpointMismatchError(
            f"{source} is a checkpoint of {saved}, not of {task_class_path(cls)}; "
            f"load it with {saved.rsplit('.', 1)[-1]}.load_from_checkpoint or zoo.load_checkpoint"
        )


def restore_data_state(datamodule: Any, path: Any) -> bool:
    """Give ``datamodule`` the state a checkpoint holds for it (Lightning saves ``datamodule.state_dict()`` under
    the class name), before its ``setup``: an n-gram datamodule then uses the featuriser fitted in training
    instead of fitting it again. Returns whether there was a state to give."""
    load = getattr(datamodule, "load_state_dict", None)
    if datamodule is None or not callable(load) or path is None:
        return False
    state = peek(path).get(type(datamodule).__qualname__)
    if not state:
        return False
    load(state)
    return True


def load_checkpoint(path: Any, map_location: Any = "cpu", **kwargs: Any) -> Any:
    """Load any zoo checkpoint with the task class recorded in it."""
    meta = peek(path).get("zoo")
    if meta is None:
        raise CheckpointMismatchError(f"{path} was not written by zoo (no 'zoo' entry)")
    cls = resolve_task_class(meta["task"])
    if cls is None or not hasattr(cls, "load_from_checkpoint") or implements_contract(cls):
        raise CheckpointMismatchError(f"{path} names task class {meta['task']!r:.120}, which is not a zoo task "
                                      "(nor one this program imported); zoo imports no module a file names")
    return cls.load_from_checkpoint(path, map_location=map_location, **kwargs)


__all__ = ["CheckpointError", "CheckpointMismatchError", "check_checkpoint_task", "checkpoint_meta", "load_checkpoint",
           "peek", "resolve_class", "resolve_datamodule_class", "resolve_task_class", "restore_data_state",
           "task_class_path", "training_position"]
