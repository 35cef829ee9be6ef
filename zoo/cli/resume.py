"""What ``zoo fit|validate|test|predict`` check and decide before any work starts: which checkpoint (``--resume``,
``--ckpt_path``), which run directory, and the inputs that would otherwise fail deep inside Lightning, torch or
YAML with a traceback (docs/reliability.md lists them)."""

from __future__ import annotations

import csv
import errno
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.cli.runs import find_resume_checkpoint, lock_run, new_output_dir, new_version_dir, plain, run_dir_of
from zoo.errors import ConfigError

#: commands that score or apply trained weights: refused without a checkpoint unless --allow_untrained
NEED_WEIGHTS = ("test", "predict")


@dataclass
class RunLocation:
    """The checkpoint a command starts from and the run directory it belongs to (None: not in a zoo run)."""

    checkpoint: Path
    run_dir: Path | None
    resumed: bool
    step: int = 0


def _sub(config: Any, key: str, default: Any = None) -> Any:
    value = config.get(key, default) if hasattr(config, "get") else default
    return default if value is None else value


def recipe_name(cfg: Any) -> str:
    configs = _sub(cfg, "config", []) or []
    if configs:
        first = configs[0]
        return Path(str(getattr(first, "relative", first))).stem
    class_path = str(_sub(_sub(cfg, "model", {}), "class_path", "model"))
    return class_path.rsplit(".", 1)[-1].lower()


def resolve_checkpoint(config: Any) -> RunLocation | None:
    """Turn ``--resume`` / ``--ckpt_path`` into one validated checkpoint (written back into the config), check it
    was written by the configured task, and refuse test / predict without one."""
    from zoo.checkpoints import check_checkpoint_task, peek, resolve_task_class, training_position

    sub = config.get("subcommand") if hasattr(config, "get") else None
    if not sub:
        return None
    cfg = config[sub]
    resume, ckpt = _sub(cfg, "resume"), _sub(cfg, "ckpt_path")
    if resume is not None and sub != "fit":
        raise ConfigError(f"--resume is for zoo fit; zoo {sub} takes --ckpt_path PATH")
    if resume is not None and ckpt is not None:
        raise ConfigError("give --resume or --ckpt_path, not both (--resume auto finds the newest valid checkpoint)")
    if ckpt in ("best", "hpc", "registry") or (isinstance(ckpt, str) and ckpt.startswith("registry:")):
        raise ConfigError(f"--ckpt_path {ckpt} is not supported by zoo; give a checkpoint file"
                          + (" or use --resume auto" if sub == "fit" else ""))
    root = Path(_sub(_sub(cfg, "trainer", {}), "default_root_dir", "runs"))
    name = recipe_name(cfg)
    checkpoint: dict[str, Any] | None = None
    resumed = False
    if resume is not None or ckpt == "last":
        # auto passes over runs trained with other model / data settings (another folder, other channels)
        settings = {section: plain(_sub(cfg, section, {})) for section in ("model", "data")}
        found = find_resume_checkpoint(str(resume or "auto"), root, name, settings,
                                       flag=f"--resume {resume}" if resume is not None else "--ckpt_path last")
        if found is None:
            if sub != "fit":
                raise ConfigError(f"--ckpt_path last: no valid checkpoint of {name} under {root / name}")
            print(f"zoo: --resume auto: no checkpoint of {name} under {root / name}; starting a new run",
                  file=sys.stderr)
            cfg["ckpt_path"] = None
            return None
        path, checkpoint = found
        cfg["ckpt_path"] = str(path)
        resumed = sub == "fit"
    elif ckpt is not None:
        path = Path(ckpt)
        checkpoint = peek(path)
    else:
        if sub in NEED_WEIGHTS and not _sub(cfg, "allow_untrained", False):
            raise ConfigError(f"zoo {sub} needs trained weights: give --ckpt_path PATH (a best.ckpt or last.ckpt under "
                              f"{root / name}/version_N/checkpoints), or --allow_untrained to use the model's initial "
                              "weights on purpose")
        return None
    model_path = _sub(_sub(cfg, "model", {}), "class_path")
    cls = resolve_task_class(str(model_path)) if model_path else None
    if cls is not None:
        check_checkpoint_task(checkpoint, cls, source=str(path))
    location = RunLocation(checkpoint=path, run_dir=run_dir_of(path), resumed=resumed or sub == "fit",
                           step=training_position(checkpoint)[1])
    if location.resumed:
        epoch, step = training_position(checkpoint)
        where = location.run_dir or "a new run directory"
        print(f"zoo: resuming {where} from {path} (epoch {epoch}, step {step})", file=sys.stderr)
    return location


def command_line_model_keys(argv: list[str]) -> set[str]:
    """The model arguments given as flags on the command line (``--model.init_args.top_k 3``, ``--model.top_k=3``,
    ``--model.init_args '{top_k: 3}'``): they win over a checkpoint's hyper-parameters, which win over the
    values of the --config files (the weights were built with them)."""
    import yaml

    keys: set[str] = set()
    for i, arg in enumerate(argv):
        flag, eq, value = arg[2:].partition("=")
        parts = flag.split(".")
        if not arg.startswith("--") or parts[0] != "model":
            continue
        rest = parts[2:] if parts[1:2] == ["init_args"] else parts[1:]
        if rest:
            if rest[0] not in ("class_path", "init_args", "dict_kwargs", "help"):
                keys.add(rest[0])
            continue
        try:  # --model '{class_path: ..., init_args: {...}}' or --model.init_args '{...}'
            given = yaml.safe_load(value if eq else (argv[i + 1] if i + 1 < len(argv) else ""))
        except yaml.YAMLError:
            continue
        if isinstance(given, dict):
            init = given if parts[1:] == ["init_args"] else given.get("init_args")
            keys.update(init if isinstance(init, dict) else ())
    return keys


def check_weights_fit(model: Any, path: Path, overrides: dict[str, tuple[Any, Any]]) -> None:
    """A flag that changes the network (``embedding_dim``) cannot win over the checkpoint whose weights are
    loaded into it: one message naming the flag, instead of torch's size-mismatch traceback later."""
    from zoo.checkpoints import peek

    saved = peek(path).get("state_dict") or {}
    # only shapes: a model may build parts from the data later, and adapter-only checkpoints hold few keys
    mismatch = [f"{key} is {list(saved[key].shape)} there, {list(value.shape)} here"
                for key, value in model.state_dict().items()
                if key in saved and hasattr(saved[key], "shape") and tuple(saved[key].shape) != tuple(value.shape)]
    if mismatch:
        flags = ", ".join(f"--model.init_args.{key} {ours}" for key, (_, ours) in overrides.items())
        theirs = ", ".join(f"{key}={saved_value}" for key, (saved_value, _) in overrides.items())
        raise ConfigError(f"{flags}: the weights in {path} were trained with {theirs}, and the network this builds "
                          f"does not fit them ({mismatch[0]}); leave the flag out to use the checkpoint's value")


def run_logger(csv_logger: type, location: RunLocation | None, sub: str, root: str, name: str) -> Any:
    """The CSV logger of a command, writing into a directory made for it (atomically) only now, when the config
    and the data have been checked: a resumed fit continues in its run directory, test / predict of a
    checkpoint write into ``test/`` / ``predict/`` (``_1``, ``_2``, ... after the first) of the checkpoint's run,
    anything else into the next ``root/name/version_N``."""
    if location is not None and location.run_dir is not None and location.run_dir.is_dir():
        if sub == "fit" and location.resumed:
            rows = history_before(location.run_dir / "metrics.csv", location.step)
            # continuing in a full folder is the point here, not a mistake to warn about
            warnings.filterwarnings("ignore",
                                    message=r".*(Experiment logs|Checkpoint) directory .* exists and is not empty")
            lock_run(location.run_dir)  # before anything is written into it
            logger = csv_logger(save_dir=str(location.run_dir.parent), name="", version=location.run_dir.name)
            # Lightning's CSV writer deletes metrics.csv when it opens a non-empty folder: hand it the rows to keep
            # and write them back at once, so one metrics.csv holds the whole run (and a second crash keeps it)
            pending = getattr(logger.experiment, "metrics", None)
            if isinstance(pending, list):
                pending[:0] = rows
                logger.save()
            return logger
        if sub != "fit":
            out = new_output_dir(location.run_dir, sub)
            return csv_logger(save_dir=str(location.run_dir), name="", version=out.name)
    folder = new_version_dir(Path(root), name)
    if sub == "fit":
        lock_run(folder)
    return csv_logger(save_dir=str(folder.parent.parent), name=folder.parent.name, version=folder.name)


def history_before(metrics: Path, step: int) -> list[dict[str, Any]]:
    """The rows of a run's metrics.csv logged before the checkpoint it resumes from: rows after it (the crashed
    run may have flushed some) are logged again by the resumed run, so the history keeps one row per step."""
    if not metrics.is_file():
        return []
    with open(metrics, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    kept = []
    for row in rows:
        if str(row.get("step", "")).isdigit() and int(row["step"]) < step:
            kept.append({k: v for k, v in row.items() if v not in ("", None)})
    return kept


def default_reliability_callbacks(callbacks: list[Any], logger: Any) -> list[Any]:
    """``last.ckpt`` at every epoch end, RNG states in every checkpoint, and a checkpoint when training dies of
    an exception (Lightning's ``OnExceptionCheckpoint``), each unless the recipe configures its own."""
    from lightning.pytorch.callbacks import OnExceptionCheckpoint

    from zoo.callbacks.checkpointing import ExceptionCheckpoint, LastCheckpoint, RunState

    added: list[Any] = []
    if not any(isinstance(c, LastCheckpoint) for c in callbacks):
        added.append(LastCheckpoint())
    if not any(isinstance(c, RunState) for c in callbacks):
        added.append(RunState())
    log_dir = getattr(logger, "log_dir", None)
    if log_dir and not any(isinstance(c, OnExceptionCheckpoint) for c in callbacks):
        added.append(ExceptionCheckpoint(dirpath=str(Path(log_dir) / "checkpoints"), filename="on_exception"))
    return added


def check_trainer_limits(trainer_cfg: dict[str, Any]) -> None:
    """Limits Lightning accepts but zoo cannot train with: a run without any end (the schedule needs a length)."""
    max_epochs, max_steps = trainer_cfg.get("max_epochs"), trainer_cfg.get("max_steps", -1)
    if max_epochs is not None and max_epochs < -1:
        raise ConfigError(f"--trainer.max_epochs must be >= 1 (or -1 with --trainer.max_steps), got {max_epochs}")
    if max_steps is not None and max_steps < -1:
        raise ConfigError(f"--trainer.max_steps must be >= 1 (or -1: no step limit), got {max_steps}")
    if max_epochs == -1 and max_steps in (None, -1) and not trainer_cfg.get("max_time"):
        raise ConfigError("--trainer.max_epochs -1 trains without end (no --trainer.max_steps or --trainer.max_time "
                          "either); give --trainer.max_epochs N >= 1")


def check_data_sizes(datamodule: Any) -> None:
    for key in ("batch_size", "eval_batch_size", "num_workers"):
        value = getattr(datamodule, key, None)
        low = 0 if key == "num_workers" else 1
        if isinstance(value, int) and not isinstance(value, bool) and value < low:
            raise ConfigError(f"--data.init_args.{key} must be >= {low}, got {value}")


#: values a --config file may expand to once its aliases are copied out (jsonargparse copies them: a file of a
#: few lines whose aliases nest ten deep would otherwise fill the memory); far above any real recipe
MAX_YAML_VALUES = 1_000_000


def expanded_size(node: Any, limit: int) -> int:
    """How many scalars, lists and mappings a composed YAML node stands for with every alias copied out, counted
    without copying (each shared node once, memoised), stopping early past ``limit``; a node that contains
    itself counts as past the limit."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(node, False)]
    open_nodes: set[int] = set()
    while stack:
        current, children_done = stack.pop()
        key = id(current)
        if key in sizes:
            continue
        children = ([c for pair in current.value for c in pair] if current.id == "mapping"
                    else current.value if current.id == "sequence" else [])
        if not children_done:
            if key in open_nodes:
                return limit + 1  # a recursive alias
            open_nodes.add(key)
            stack.append((current, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        if any(id(c) not in sizes for c in children):
            return limit + 1  # a child still open: the node contains itself
        sizes[key] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
        open_nodes.discard(key)
    return sizes[id(node)]


def check_config_files(argv: list[str]) -> None:
    """Each ``--config FILE``: it exists and is valid YAML; a syntax error names the file and line (jsonargparse
    would report ``"<unicode string>", line 3``)."""
    import yaml

    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = Path(argv[i + 1])
        elif arg.startswith("--config="):
            path = Path(arg.split("=", 1)[1])
        else:
            continue
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"--config {path}: not UTF-8 text (byte {err.start})") from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)  # aliases still shared: nothing expanded yet
            if node is not None and expanded_size(node, MAX_YAML_VALUES) > MAX_YAML_VALUES:
                raise ConfigError(f"--config {path}: its aliases (*name) expand to more than {MAX_YAML_VALUES:,} "
                                  "values (an alias bomb?); write the values out or use fewer nested aliases")
            yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"--config {path}: invalid YAML{where}: {problem}") from None


def os_error_message(err: BaseException) -> str | None:
    """One line for what the environment refused (read-only folder, disk full), found anywhere in the chain."""
    seen = 0
    while err is not None and seen < 20:
        if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            where = f" {err.filename}" if err.filename else ""
            return f"cannot write{where}: {err.strerror or err}"
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
        seen += 1
    return None


__all__ = ["NEED_WEIGHTS", "RunLocation", "check_config_files", "check_data_sizes", "check_weights_fit",
           "command_line_model_keys",
           "check_trainer_limits", "default_reliability_callbacks", "expanded_size", "os_error_message", "recipe_name",
           "resolve_checkpoint", "run_logger"]
