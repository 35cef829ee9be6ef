"""``zoo fit|validate|test|predict``: LightningCLI with zoo defaults.

    zoo fit --config recipes/vision/digits.yaml
    zoo test --config recipes/vision/digits.yaml --ckpt_path runs/digits/version_0/checkpoints/best.ckpt
    zoo predict --config recipes/vision/digits.yaml --ckpt_path ... > predictions.csv

Defaults added to every run (each only when the config has none of its kind): a CSV logger writing to
``runs/<recipe name>/version_N``, a ``ModelCheckpoint`` on the model's headline metric (``best.ckpt`` and
``last.ckpt``), a :class:`~zoo.callbacks.run_report.RunReport` (curves, confusion matrix, report) and, for
``predict``, a :class:`~zoo.callbacks.prediction_writer.PredictionWriter` to ``--output`` (standard output by default),
and a Rich progress bar with samples/s. Before the Trainer is built, :mod:`zoo.scale` checks the precision /
strategy against the hardware and installed extras (one message naming the overlay), and a W&B logger gets the
recipe name as its group and task / backbone / technique tags.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from zoo.compat import install_class_name_resolver, jsonargparse_debug_mode, parser_actions, rich_available
from zoo.contract import trait
from zoo.version import __version__


class ZooArgumentParser(LightningArgumentParser):
    """Reports a bad key or value in one short message, with close matches, instead of a page of usage."""

    def error(self, message: str, ex: Exception | None = None) -> Any:
        if not self.exit_on_error or jsonargparse_debug_mode():
            return super().error(message, ex)
        sub = getattr(ex, "subcommand_parser", None)
        prog = (sub or self).prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {_explain(message, self)}\n")
        sys.stderr.write(f"Run `{prog} --help` for the accepted keys (`--model.help CLASS` for a model's).\n")
        self.exit(2)


def _known_keys(parser: Any, seen: set[int] | None = None) -> list[str]:
    seen = seen if seen is not None else set()
    if id(parser) in seen:
        return []
    seen.add(id(parser))
    keys = []
    for action in parser_actions(parser):
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for sub in choices.values():
                keys += _known_keys(sub, seen)
        dest = getattr(action, "dest", "")
        if dest and dest not in ("help", "config", "print_config", "==SUPPRESS=="):
            keys.append(dest)
    return keys


def _init_params(class_path: str) -> list[str]:
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    except (ImportError, AttributeError, ValueError, TypeError):
        return []


_UNKNOWN_KEY_PATTERNS = (
    r"""[Oo]ption ["']([\w.\-]+)["'] is not accepted""",
    r"""does not accept option ["']([\w.\-]+)["']""",
    r"""[Kk]ey ["']([\w.\-]+)["'] is not expected""",
    r"""No action for key ["']([\w.\-]+)["']""",
    r"""unrecognized arguments: --([\w.\-]+)""",
)


def _unknown_keys(message: str) -> list[str]:
    return [m for pattern in _UNKNOWN_KEY_PATTERNS for m in re.findall(pattern, message)]


def _explain(message: str, parser: Any) -> str:
    hints = []
    candidates = sorted(set(_known_keys(parser)))
    class_match = re.search(r"class_path '([\w.]+)'", message)
    for bad in dict.fromkeys(_unknown_keys(message)):
        if bad in candidates:
            continue
        if class_match and "." not in bad:
            params = _init_params(class_match.group(1))
            close = difflib.get_close_matches(bad, params, n=3, cutoff=0.6)
            accepted = ", ".join(params)
            hints.append(f"'{bad}' is not an argument of {class_match.group(1).rsplit('.', 1)[-1]}"
                         + (f"; did you mean: {', '.join(close)}?" if close else "") + f" Accepted: {accepted}")
            continue
        close = difflib.get_close_matches(bad, candidates, n=3, cutoff=0.75)
        if not close:
            leaf = bad.rsplit(".", 1)[-1]
            close = [c for c in candidates if difflib.SequenceMatcher(None, leaf, c.rsplit(".", 1)[-1]).ratio() > 0.8][:3]
        if close:
            hints.append(f"'{bad}' is not an accepted key; did you mean: {', '.join(close)}?")
    return "\n".join([message.strip(), *hints])


class ZooCLI(LightningCLI):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _install_registry_names()
        kwargs.setdefault("model_class", pl.LightningModule)
        kwargs.setdefault("datamodule_class", pl.LightningDataModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"description": f"zoo {__version__}: train, test and predict with recipes. "
                                                          "Also: `zoo list {models,backbones,datasets,callbacks,datamodules,recipes}`."})
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("parser_class", ZooArgumentParser)
        super().__init__(*args, **kwargs)

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        kwargs.setdefault("dump_header", [f"zoo {__version__}"])
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--output", type=str, default="-", help="predict: CSV file for predictions ('-' = stdout)")

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # Bind the data now rather than in setup(): callbacks such as BackboneFinetuning touch the network in
        # their own setup, which Lightning runs before the module's. ZooTask.setup binds again (a no-op).
        from zoo.tasks.base import ZooTask

        if isinstance(self.model, ZooTask) and self.datamodule is not None:
            self.model.bind_data(self.datamodule)

    def _recipe_name(self) -> str:
        cfg = self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config
        configs = cfg.get("config") or []
        if configs:
            first = configs[0]
            return Path(str(getattr(first, "relative", first))).stem
        return type(self.model).__name__.lower()

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
        from lightning.pytorch.loggers import CSVLogger

        from zoo.callbacks.prediction_writer import PredictionWriter
        from zoo.callbacks.run_report import RunReport
        from zoo.scale import check_precision, check_strategy

        trainer_cfg = self._get(self.config_init, "trainer", default={})
        check_precision(trainer_cfg.get("precision"), trainer_cfg.get("accelerator", "auto"))
        check_strategy(trainer_cfg.get("strategy"), trainer_cfg.get("accelerator", "auto"),
                       bool(trainer_cfg.get("sync_batchnorm", False)))
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if not any(isinstance(c, RunReport) for c in callbacks):
            callbacks.append(RunReport())
        monitor = trait(self.model, "monitor")
        if (monitor and trainer_cfg.get("enable_checkpointing", True) is not False
                and not any(isinstance(c, ModelCheckpoint) for c in callbacks)):
            callbacks.append(ModelCheckpoint(monitor=monitor, mode=trait(self.model, "monitor_mode"),
                                             filename="best", save_last=True, auto_insert_metric_name=False))
        if self.subcommand == "predict":
            kwargs.setdefault("enable_progress_bar", False)
            kwargs.setdefault("enable_model_summary", False)
            callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
            if not any(isinstance(c, PredictionWriter) for c in callbacks):
                output = self._get(self.config, "output", default="-")
                callbacks.append(PredictionWriter(output=output))
        elif trainer_cfg.get("enable_progress_bar", True) is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            if rich_available():
                from zoo.callbacks.progress import ZooProgressBar

                callbacks.append(ZooProgressBar())
        kwargs["callbacks"] = callbacks
        if trainer_cfg.get("logger") in (None, True):
            root = trainer_cfg.get("default_root_dir") or "runs"
            kwargs["logger"] = CSVLogger(save_dir=root, name=self._recipe_name())
        else:
            from zoo.callbacks.tracking import WandbLogger, run_tags

            loggers = trainer_cfg.get("logger")
            for logger in loggers if isinstance(loggers, list) else [loggers]:
                if isinstance(logger, WandbLogger):
                    logger.describe_run(group=self._recipe_name(), tags=run_tags(self.model, callbacks))
        return super().instantiate_trainer(**kwargs)


def _install_registry_names() -> None:
    """Let YAML name a model, datamodule or callback by registry name (``class_path: image_classifier``) as well
    as by class name or dotted path."""
    install_class_name_resolver(_registry_class_path)


#: modules whose classes moved in the 0.2 layout: old dotted paths in users' YAML keep working
LEGACY_MODULES = {
    "zoo.callbacks": "zoo.techniques",  # zoo.callbacks.FGM, ... (the run callbacks are found there first)
    "zoo.callbacks.adversarial": "zoo.techniques",
    "zoo.callbacks.regularization": "zoo.techniques",
    "zoo.callbacks.distillation": "zoo.techniques",
    "zoo.callbacks.scale": "zoo.callbacks.compile",
    "zoo.callbacks.reporting": "zoo.callbacks",
}


def _registry_class_path(name: str) -> str | None:
    if "." in name:
        return _moved_class_path(name)
    from zoo.registry import CALLBACKS, DATAMODULES, MODELS

    for registry in (MODELS, DATAMODULES, CALLBACKS):
        if name in registry and (registry is not CALLBACKS or isinstance(registry.get(name), type)):
            target = registry.get(name)
            return f"{target.__module__}.{target.__qualname__}"
    return None


def _moved_class_path(path: str) -> str | None:
    import importlib

    module, _, leaf = path.rpartition(".")
    new = LEGACY_MODULES.get(module)
    if new is None:
        return None
    for candidate in (module, new):
        try:
            if isinstance(getattr(importlib.import_module(candidate), leaf, None), type):
                return f"{candidate}.{leaf}"
        except ImportError:
            continue
    return None


def _zoo_error_in_chain(err: BaseException | None, kind: type) -> BaseException | None:
    """jsonargparse wraps errors raised while instantiating classes; find ours in the chain."""
    seen = 0
    while err is not None and seen < 20:
        if isinstance(err, kind):
            return err
        err = err.__cause__ or err.__context__
        seen += 1
    return None




def run(argv: list[str]) -> int:
    """The Lightning subcommands; a :class:`~zoo.errors.ZooError` anywhere in the chain becomes one line."""
    import os

    from zoo.errors import ZooError

    try:
        ZooCLI(args=argv)
    except Exception as err:
        cause = _zoo_error_in_chain(err, ZooError)
        if cause is None or os.environ.get("ZOO_DEBUG"):
            raise
        print(f"zoo: error: {cause}", file=sys.stderr)
        return 2
    return 0
