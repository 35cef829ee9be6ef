"""Run directories: creating them atomically, finding the checkpoint to resume from, and where ``zoo test`` /
``zoo predict`` write beside the checkpoint they use.

    runs/<recipe>/version_N/            one training run (config.yaml, metrics.csv, curves, reports)
    runs/<recipe>/version_N/checkpoints best.ckpt, last.ckpt, on_exception.ckpt
    runs/<recipe>/version_N/test, test_1, ...      each `zoo test` of one of its checkpoints
    runs/<recipe>/version_N/predict, predict_1     each `zoo predict`

Directories created by the command in progress are remembered (:data:`CREATED`), so a command that fails before
it has written a checkpoint or a report leaves none behind (:func:`remove_unfinished`).
"""

from __future__ import annotations

import errno
import shutil
import sys
from pathlib import Path
from typing import Any

from zoo.errors import CheckpointError, RunDirError

#: directories made by the command in progress, removed again if it fails before doing work
CREATED: list[Path] = []


def _mkdir_new(path: Path) -> bool:
    """Create ``path`` (not its parent); False when it exists already (another run took that name)."""
    try:
        path.mkdir()
    except FileExistsError:
        return False
    except OSError as err:
        raise RunDirError(_os_message(err, path)) from None
    CREATED.append(path)
    return True


def _os_message(err: OSError, path: Path) -> str:
    reason = {errno.EACCES: "permission denied", errno.EROFS: "read-only file system",
              errno.ENOSPC: "no space left on device", errno.ENOENT: "its parent folder does not exist"}
    why = reason.get(err.errno or 0, err.strerror or type(err).__name__)
    return (f"cannot create the run directory {path}: {why}; choose a writable place with "
            "--trainer.default_root_dir")


#: folders made only to hold a run (runs/, runs/<recipe>): removed on failure only when still empty
ANCESTORS: list[Path] = []


def _ensure_parent(folder: Path) -> None:
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(_os_message(err, folder)) from None
    ANCESTORS.extend(reversed(missing))


def new_version_dir(root: Path, name: str) -> Path:
    """``root/name/version_N`` with the next free N, created with ``mkdir`` that fails on an existing folder: two
    runs started at the same moment never share one (the loser takes the next number)."""
    parent = Path(root) / name
    _ensure_parent(parent)
    taken = [int(p.name.split("_", 1)[1]) for p in parent.glob("version_*") if p.name.split("_", 1)[1].isdigit()]
    n = max(taken, default=-1) + 1
    while not _mkdir_new(parent / f"version_{n}"):
        n += 1
    return parent / f"version_{n}"


def new_output_dir(run: Path, kind: str) -> Path:
    """``run/kind``, or ``run/kind_1``, ``kind_2``, ... when earlier outputs are there: never overwritten."""
    n = 0
    while not _mkdir_new(run / (kind if n == 0 else f"{kind}_{n}")):
        n += 1
    return run / (kind if n == 0 else f"{kind}_{n}")


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint belongs to (``.../version_N/checkpoints/x.ckpt`` -> ``.../version_N``)."""
    checkpoint = Path(checkpoint).resolve()
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent
    return None


def remove_unfinished() -> None:
    """Remove what the failed command created and did no work in: folders holding no checkpoint. Folders of
    `zoo test` / `zoo predict` go whole (their partial outputs are not a result)."""
    for path in reversed(CREATED):
        if not path.is_dir():
            continue
        if path.name.startswith(("test", "predict")) or not any(path.rglob("*.ckpt")):
            shutil.rmtree(path, ignore_errors=True)
    for path in reversed(ANCESTORS):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    forget()


def forget() -> None:
    """Start a command with nothing recorded (the CLI runs several commands in one process in tests)."""
    CREATED.clear()
    ANCESTORS.clear()


def _candidates(spec: Path) -> list[Path]:
    if spec.is_file():
        return [spec]
    if (spec / "checkpoints").is_dir():
        return list((spec / "checkpoints").glob("*.ckpt"))
    return list(spec.glob("*/checkpoints/*.ckpt"))


def find_resume_checkpoint(spec: str, root: Path, name: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest valid checkpoint for ``--resume spec``: ``auto`` searches ``root/name/version_*``, a file is
    that checkpoint, a folder is a run directory (or a folder of runs). A truncated or corrupt file is skipped
    with a warning and the previous one is used. None when ``auto`` finds nothing."""
    from zoo.checkpoints import peek

    where = Path(root) / name if spec == "auto" else Path(spec)
    if spec != "auto" and not where.exists():
        raise CheckpointError(f"--resume {spec}: no such checkpoint or run directory")
    files = sorted(_candidates(where), key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True)
    for path in files:
        try:
            checkpoint = peek(path)
        except CheckpointError as err:
            print(f"zoo: warning: skipping {err}", file=sys.stderr)
            continue
        if "loops" not in checkpoint or "state_dict" not in checkpoint:
            print(f"zoo: warning: skipping {path}: it holds weights only, not a training state", file=sys.stderr)
            continue
        return path, checkpoint
    if spec == "auto":
        return None
    raise CheckpointError(f"--resume {spec}: no valid checkpoint to resume from"
                          + (f" (looked at {len(files)} file(s))" if files else " (no *.ckpt there)"))


__all__ = ["ANCESTORS", "CREATED", "forget", "find_resume_checkpoint", "new_output_dir", "new_version_dir", "remove_unfinished", "run_dir_of"]
