"""What ``zoo export`` / ``zoo serve`` accept as a source: a run directory (``<root>/<recipe>/version_N`` with
``config.yaml`` and ``checkpoints/best.ckpt`` or ``last.ckpt``) or a checkpoint file inside one. The model comes
from the checkpoint (``weights_only=True``); the datamodule is rebuilt from the run's ``config.yaml``, since export
needs the run's preprocessing and sample inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from zoo.checkpoints import load_checkpoint, restore_data_state
from zoo.export.spec import ExportError


def resolve_source(source: str | Path) -> tuple[Path, Path | None]:
    """(checkpoint, run directory or None)."""
    path = Path(source)
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            ckpt = path / "checkpoints" / name
            if ckpt.is_file():
                return ckpt, path
        raise ExportError(f"{path} is not a run directory: it has neither checkpoints/best.ckpt nor "
                          "checkpoints/last.ckpt (expected <root>/<recipe>/version_N or a .ckpt file)")
    if path.is_file():
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return path, run if (run / "config.yaml").is_file() else None
    raise ExportError(f"{path} does not exist; expected a run directory (runs/<recipe>/version_N) or a .ckpt file")


def _instantiate(section: Any, where: str) -> Any:
    if not isinstance(section, dict) or "class_path" not in section:
        raise ExportError(f"{where}: expected a 'data' section with class_path / init_args")
    path = str(section["class_path"])
    cls: Any = None
    if "." in path:  # read from a run's config.yaml: nothing is imported on its word
        from zoo.checkpoints import resolve_datamodule_class

        cls = resolve_datamodule_class(path)
    else:
        from zoo.registry import DATAMODULES

        cls = DATAMODULES.get(path) if path in DATAMODULES else None
    if cls is None:
        raise ExportError(f"{where}: data class {path!r:.120} is not a zoo datamodule (nor one this program "
                          "imported); zoo imports no module a file names")
    return cls(**dict(section.get("init_args") or {}))


def load_run(source: str | Path) -> tuple[Any, Any, Path, Path | None]:
    """(model, datamodule, checkpoint, run directory) of a source."""
    ckpt, run = resolve_source(source)
    if run is None:
        raise ExportError(f"{ckpt} has no config.yaml beside its run directory: export needs the run's data "
                          "settings (preprocessing, sample inputs); pass the run directory runs/<recipe>/version_N")
    config = run / "config.yaml"
    try:
        cfg = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ExportError(f"{config} cannot be read: {err}") from None
    datamodule = _instantiate(cfg.get("data"), str(config))
    restore_data_state(datamodule, ckpt)  # the n-gram featuriser fitted in training, not fitted again
    model = load_checkpoint(ckpt)
    return model, datamodule, ckpt, run


__all__ = ["load_run", "resolve_source"]
