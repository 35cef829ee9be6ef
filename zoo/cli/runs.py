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
import os
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
              errno.ENOSPC: "no space left on device", errno.ENOENT: "its parent folder does not exist",
              errno.ENAMETOOLONG: "the path or one of its names is too long for the file system (a name holds at "
                                  "most 255 bytes)"}
    why = reason.get(err.errno or 0, err.strerror or type(err).__name__)
    return (f"cannot create the run directory {path}: {why}; choose a writable place with "
            "--trainer.default_root_dir")


#: folders made only to hold a run (runs/, runs/<recipe>): removed on failure only when still empty
ANCESTORS: list[Path] = []


def _ensure_parent(folder: Path) -> None:
    missing = [p for p in [folder, *folder.parents] if not os.path.lexists(p)]  # False, not an error, when too long
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        for path in missing:  # deepest first: the ancestors made before the failing one (runs/ of runs/<long>)
            if os.path.isdir(path) and not os.listdir(path):
                path.rmdir()
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
    release_locks()
    for path in reversed(CREATED):
        if not path.is_dir():
            continue
        if path.name.startswith(("test", "predict")) or not any(path.rglob("*.ckpt")):
            shutil.rmtree(path, ignore_errors=True)
    for path in reversed(ANCESTORS):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    forget()


#: a fit holds ``<run>/.zoo.lock`` (an OS file lock, with its PID inside) while it writes into the run
LOCK_FILE = ".zoo.lock"
_LOCKS: dict[Path, Any] = {}


def lock_run(run: Path) -> None:
    """Hold the run directory for this process: a second ``zoo fit`` of the same run (``--resume auto`` twice at
    once) is refused with the holder's PID. The lock is the kernel's (``flock``), so it dies with its process; a
    lock file left by a dead process is taken over, and the temporary checkpoint files it left are removed."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs are not locked there
        return
    if os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) != "0" or run in _LOCKS:
        return  # under DDP the launching rank holds the lock for all
    path = run / LOCK_FILE
    while True:
        fh = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise RunDirError(f"{run} is being written by another zoo process (PID {holder}, lock {path}); wait "
                              "for it to end or stop it, or start a new run without --resume") from None
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its last holder unlinked while this process opened it
            break
        fh.close()
    fh.seek(0)
    previous = fh.read().strip()
    if previous.isdigit() and int(previous) != os.getpid():
        print(f"zoo: {run}: taking over the lock of process {previous}, which is no longer running",
              file=sys.stderr)
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    _LOCKS[run] = fh
    for stale in (run / "checkpoints").glob(".*.tmp"):  # a write killed mid-way (kill -9) left it
        stale.unlink(missing_ok=True)


def release_locks() -> None:
    """Give up the run directories this process holds (the lock file goes with them)."""
    for run, fh in list(_LOCKS.items()):
        (run / LOCK_FILE).unlink(missing_ok=True)  # while still holding it: see the inode check in lock_run
        fh.close()
    _LOCKS.clear()


def forget() -> None:
    """Start a command with nothing recorded (the CLI runs several commands in one process in tests)."""
    CREATED.clear()
    ANCESTORS.clear()


#: settings that change how a run reads its data or serves predictions, not what it trains: a run whose
#: config.yaml differs from the command only in these is still the same run
NOT_TRAINING_SETTINGS = frozenset({"num_workers", "eval_batch_size", "cache_dir", "chunk_rows", "predict",
                                   "predict_source", "predict_users", "unknown_users", "top_k"})


def plain(value: Any) -> Any:
    """A config value (jsonargparse Namespace, tuple, path object) as the YAML-like value config.yaml holds."""
    import json

    if hasattr(value, "as_dict"):
        value = value.as_dict()
    return json.loads(json.dumps(value, default=str))


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flat(sub, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def settings_differences(run: Path, settings: dict[str, Any]) -> list[str] | None:
    """The model / data keys whose value in ``run/config.yaml`` differs from ``settings`` (the command's, as
    :func:`plain` values), as ``key: <run's value> there, <command's> here``; None when the run has no readable config.
    A model key the command leaves None is filled from the data or the checkpoint (``class_names``,
    ``num_users``), so it is not a difference; keys only one side knows (another zoo version) are not either."""
    import yaml

    try:
        saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    differences = []
    for section in ("model", "data"):
        theirs, ours = _flat(plain(saved.get(section)), section), _flat(settings.get(section), section)
        for key, value in ours.items():
            leaf = key.rsplit(".", 1)[-1]
            if key not in theirs or leaf in NOT_TRAINING_SETTINGS or theirs[key] == value:
                continue
            if section == "model" and value is None:
                continue
            differences.append(f"{key}: {theirs[key]!r} there, {value!r} here")
    return differences


def _runs(where: Path) -> list[Path]:
    """The run directories under ``where`` (itself, or a folder of runs), newest checkpoint first."""
    runs = ([where] if (where / "checkpoints").is_dir()
            else [p.parent for p in where.glob("*/checkpoints") if p.is_dir()])

    def newest(run: Path) -> int:
        return max((p.stat().st_mtime_ns for p in (run / "checkpoints").glob("*.ckpt")), default=0)

    return sorted(runs, key=newest, reverse=True)


def _most_advanced(files: list[Path]) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint holding the furthest training state: by the global step and epoch recorded in it (the
    end-of-fit calibration rewrites best.ckpt after last.ckpt, so the newest file is not the furthest one), then
    last.ckpt, then the newest. Truncated or corrupt files, and weights-only files ahead of it, are skipped with
    a warning."""
    from zoo.checkpoints import peek, training_position

    loaded = []
    for path in files:
        try:
            loaded.append((path, peek(path)))
        except CheckpointError as err:
            print(f"zoo: warning: skipping {err}", file=sys.stderr)
    loaded.sort(key=lambda pc: (training_position(pc[1])[::-1], pc[0].name == "last.ckpt", pc[0].stat().st_mtime_ns),
                reverse=True)
    for path, checkpoint in loaded:
        if "loops" not in checkpoint or "state_dict" not in checkpoint:
            print(f"zoo: warning: skipping {path}: it holds weights only, not a training state", file=sys.stderr)
            continue
        return path, checkpoint
    return None


def find_resume_checkpoint(spec: str, root: Path, name: str, settings: dict[str, Any] | None = None,
                           flag: str = "") -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume from for ``--resume spec``: ``auto`` searches ``root/name/version_*``, a file is
    that checkpoint, a folder is a run directory (or a folder of runs). Of several runs, the one with the newest
    checkpoint is taken, skipping (with a note) runs whose config.yaml differs from ``settings`` in model or
    data; in that run, the most advanced valid training state (:func:`_most_advanced`). None when ``auto``
    finds nothing. ``flag`` is what the user typed, for the note (``--ckpt_path last`` searches as ``auto``)."""
    where = Path(root) / name if spec == "auto" else Path(spec)
    if spec != "auto" and not where.exists():
        raise CheckpointError(f"--resume {spec}: no such checkpoint or run directory")
    if where.name == "checkpoints" and where.is_dir():
        where = where.parent
    if where.is_file():
        found, looked = _most_advanced([where]), 1
    else:
        found, looked = None, 0
        runs = _runs(where)
        for run in runs:
            differences = settings_differences(run, settings) if settings is not None and run != where else None
            if differences:
                shown = "; ".join(differences[:4]) + ("; ..." if len(differences) > 4 else "")
                flag = flag or f"--resume {spec}"
                hint = f"--resume {run}" if flag.startswith("--resume") else f"--ckpt_path {run / 'checkpoints'}/FILE"
                print(f"zoo: {flag}: passing over {run}: its model/data settings differ from this "
                      f"command's ({shown}); give {hint} with its settings to use it", file=sys.stderr)
                continue
            files = sorted((run / "checkpoints").glob("*.ckpt"))
            looked += len(files)
            found = _most_advanced(files)
            if found is not None:
                break
    if found is not None or spec == "auto":
        return found
    raise CheckpointError(f"--resume {spec}: no valid checkpoint to resume from"
                          + (f" (looked at {looked} file(s))" if looked else " (no *.ckpt there)"))


__all__ = ["ANCESTORS", "CREATED", "NOT_TRAINING_SETTINGS", "forget", "find_resume_checkpoint", "new_output_dir",
           "new_version_dir", "plain", "remove_unfinished", "run_dir_of", "settings_differences"]
