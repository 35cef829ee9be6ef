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

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
from jsonargparse import ActionYesNo
from lightning.pytorch.cli import LightningArgumentParser

from zoo.cli.parse_errors import ZooArgumentParser, _explain  # noqa: F401  (zoo.cli.tune imports _explain here)
from zoo.compat import LightningCLIWithCheckpointHook, install_class_name_resolver, rich_available
from zoo.contract import trait
from zoo.version import __version__

#: Lightning's precision values (spelt out: its own type alias is private) plus zoo's ``auto``
Precision = Literal[64, 32, 16, "auto", "64", "32", "16", "bf16", "64-true", "32-true", "16-true", "16-mixed",
                    "bf16-true", "bf16-mixed", "transformer-engine", "transformer-engine-float16"]


class ZooTrainer(pl.Trainer):
    """Lightning's Trainer that also takes ``precision: auto`` (:func:`zoo.scale.resolve_precision`). ZooCLI
    resolves it before the Trainer is built and says which in one line; this class, for a Trainer built otherwise."""

    def __init__(self, *, precision: Precision | None = None, **kwargs: Any) -> None:
        super().__init__(precision=_auto_precision(precision, kwargs), **kwargs)


def _auto_precision(precision: Any, trainer_kwargs: dict[str, Any]) -> Any:
    """``auto`` resolved for the Trainer's accelerator (outside ZooTrainer.__init__: jsonargparse reads a
    ``kwargs.get`` there as a parameter of its own and loses the accelerator's type)."""
    if precision != "auto":
        return precision
    from zoo.scale import resolve_precision

    return resolve_precision(precision, trainer_kwargs.get("accelerator", "auto"))[0]


class ZooCLI(LightningCLIWithCheckpointHook):
    #: the checkpoint and run directory this command starts from (zoo.cli.resume.resolve_checkpoint)
    _run_location: Any = None
    #: the command line, and the model flags on it that differ from the checkpoint's: {key: (saved, given)}
    _argv: list[str] = []
    _overrides: dict[str, tuple[Any, Any]] = {}
    #: whether the datamodule got its state from the checkpoint (once, before its setup)
    _data_restored = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _install_registry_names()
        kwargs.setdefault("trainer_class", ZooTrainer)
        kwargs.setdefault("model_class", pl.LightningModule)
        kwargs.setdefault("datamodule_class", pl.LightningDataModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {
            "description": f"zoo {__version__}: train, test and predict with recipes. "
                           "Also: `zoo list {models,backbones,datasets,callbacks,datamodules,recipes}`."})
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("parser_class", ZooArgumentParser)
        super().__init__(*args, **kwargs)

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict[str, Any],
                     subparser_kwargs: dict[str, Any]) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        if add_subcommands:
            # Trainer.fit/validate/test/predict load --ckpt_path themselves: say weights_only=True to each, rather
            # than leave it to Lightning's and torch's defaults (None; False for a remote path)
            self.parser.set_defaults({f"{sub}.weights_only": True for sub in self.subcommands()})

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        kwargs.setdefault("dump_header", [f"zoo {__version__}"])
        kwargs.setdefault("allow_abbrev", False)  # --trainer.max_epoch is a typo, not --trainer.max_epochs
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--output", type=str, default="-", help="predict: CSV file for predictions ('-' = stdout)")
        parser.add_argument("--resume", type=str | None, default=None,
                            help="fit: continue a run from its newest valid checkpoint: auto (this recipe's runs), "
                                 "a checkpoint file or a run directory (docs/reliability.md)")
        # bare `--allow_untrained` as README and the refusal spell it; `--allow_untrained true|false` too
        parser.add_argument("--allow_untrained", action=ActionYesNo, nargs="?", default=False,
                            help="test/predict: run without --ckpt_path, with the model's initial weights")
        parser.add_argument("--calibration", type=str, default="temperature",
                            help="temperature (fit after fit, apply in test/predict) or none (docs/trust.md)")
        parser.add_argument("--card", type=dict | None, default=None,
                            help="model card text: intended_use, limitations, license, summary, dataset_name "
                                 "(docs/trust.md)")
        parser.add_argument("--coverage", type=float | None, default=None,
                            help="predict: add a conformal prediction_set column reaching this coverage, e.g. 0.9")
        parser.add_argument("--target_accuracy", type=float | None, default=None,
                            help="test: report the confidence threshold and share answered at this accuracy, e.g. 0.98")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._argv = [str(a) for a in (sys.argv[1:] if args is None else args if isinstance(args, list) else [])]
        super().parse_arguments(parser, args)
        from zoo.cli.resume import resolve_checkpoint
        from zoo.errors import ConfigError

        sub = self.config.get("subcommand")
        if sub and self.config[sub].get("weights_only") is False:
            raise ConfigError("--weights_only false: zoo reads checkpoints with weights_only=True only (tensors and "
                              "plain values; a file that needs code to unpickle is refused), so leave it out")
        if sub and self.config[sub].get("weights_only") is None:  # what config.yaml of earlier runs holds
            self.config[sub]["weights_only"] = True

        seed = self.config[sub].get("seed_everything") if sub else None
        if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= 2**32 - 1:
            raise ConfigError(f"--seed_everything {seed}: a seed must be between 0 and {2**32 - 1} (numpy's range)")
        output = self.config[sub].get("output") if sub == "predict" else None
        if output not in (None, "-") and Path(str(output)).is_dir():
            raise ConfigError(f"--output {output} is a folder; give the CSV file to write, e.g. "
                              f"{Path(str(output)) / 'predictions.csv'}")
        # before LightningCLI reads the checkpoint's hyperparameters into the config: a bad or foreign file must
        # stop here with one message, not build another task's model
        self._run_location = resolve_checkpoint(self.config)

    def merge_checkpoint_hyperparameters(self) -> None:
        # the file was checked in parse_arguments; a checkpoint saved outside the CLI has no _class_path, so the
        # class comes from its zoo entry
        location = self._run_location
        sub = self.config.get("subcommand")
        if location is None or not sub:
            return
        from zoo.checkpoints import peek

        checkpoint = peek(location.checkpoint)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        class_path = hparams.pop("_class_path", None) or (checkpoint.get("zoo") or {}).get("task")
        if not hparams or not class_path:
            return
        from zoo.checkpoints import CheckpointMismatchError, resolve_task_class

        if resolve_task_class(str(class_path)) is None:  # before the parser, which would import the module it names
            raise CheckpointMismatchError(f"{location.checkpoint} names task class {str(class_path)!r:.120}, which "
                                          "is not a zoo task (nor one this program imported); zoo imports no module "
                                          "a file names")
        from zoo.cli.resume import command_line_model_keys
        from zoo.cli.runs import plain

        # the weights were built with the checkpoint's values, so they beat the recipe's; a flag on the command
        # line beats both (check_weights_fit stops one that changes the network)
        given = plain(self.config[sub]["model"].get("init_args")) or {}
        explicit = command_line_model_keys(self._argv) & set(hparams)
        self._overrides = {key: (plain(hparams[key]), given.get(key)) for key in sorted(explicit)
                           if plain(hparams[key]) != given.get(key)}
        for key in explicit:
            hparams.pop(key)
        update = {sub: {"model": {"class_path": class_path, "dict_kwargs": hparams}}}
        try:
            self.config = self.parser.parse_object(update, self.config)
        except SystemExit:
            sys.stderr.write(f"zoo: the hyper-parameters in {location.checkpoint} do not fit this recipe's model\n")
            raise

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        self._bind_data()
        if self._overrides and self._run_location is not None:
            from zoo.cli.resume import check_weights_fit

            check_weights_fit(self.model, self._run_location.checkpoint, self._overrides)
            for key, (saved, ours) in self._overrides.items():
                print(f"zoo: --model.init_args.{key} {ours} (command line) replaces {key}={saved} of "
                      f"{self._run_location.checkpoint}", file=sys.stderr)

    def _bind_data(self) -> None:
        # Bind the data before the Trainer (and its run directory) exists, rather than in setup(): a bad data file
        # stops the run before anything is written, and callbacks such as BackboneFinetuning touch the network in
        # their own setup, which Lightning runs before the module's. ZooTask.setup binds again (a no-op).
        from zoo.cli.resume import check_data_sizes
        from zoo.tasks.base import ZooTask

        check_data_sizes(self.datamodule)
        if self._run_location is not None and not self._data_restored:
            from zoo.checkpoints import restore_data_state

            # what the data fitted in training (the n-gram featuriser) comes from the checkpoint, not a refit
            self._data_restored = restore_data_state(self.datamodule, self._run_location.checkpoint)
        if isinstance(self.model, ZooTask) and self.datamodule is not None:
            self.model.bind_data(self.datamodule)

    def _say_num_workers(self) -> None:
        workers, cores = getattr(self.datamodule, "num_workers", 0), os.cpu_count() or 1
        if isinstance(workers, int) and workers > cores:
            print(f"zoo: data.num_workers {workers} is more than this machine's {cores} CPU cores: the loader "
                  f"processes compete for them (each with a copy of the data); {cores} or fewer is usually faster",
                  file=sys.stderr)

    def _recipe_name(self) -> str:
        cfg = self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config
        configs = cfg.get("config") or []
        if configs:
            first = configs[0]
            return Path(str(getattr(first, "relative", first))).stem
        return type(self.model).__name__.lower()

    def _announce_recipe_time(self, max_time: Any) -> None:
        """Say how long a long shipped recipe trains (its measurement in recipes/results.yaml) before it starts,
        so a first run that takes an hour does not look like a hang."""
        from zoo.cli.results import recipe_time_line

        cfg = self.config.get(str(self.subcommand), self.config)
        configs = cfg.get("config") or []
        line = recipe_time_line(str(getattr(configs[0], "absolute", configs[0])), max_time) if configs else None
        if line:
            print(f"zoo: {line}", file=sys.stderr)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
        from lightning.pytorch.loggers import CSVLogger

        from zoo.callbacks.baseline import BaselineComparison
        from zoo.callbacks.card import ModelCardWriter
        from zoo.callbacks.data_checks import DataChecks
        from zoo.callbacks.early_stopping import EarlyStoppingNotice
        from zoo.callbacks.prediction_writer import PredictionWriter
        from zoo.callbacks.run_report import RunReport
        from zoo.callbacks.trust import Trust
        from zoo.cli.resume import check_trainer_limits, default_reliability_callbacks, run_logger
        from zoo.scale import check_devices, check_precision, check_strategy, resolve_precision

        trainer_cfg = self.config_value(self.config_init, "trainer", default={})
        self._say_num_workers()
        check_trainer_limits(trainer_cfg)
        self._bind_data()
        check_devices(trainer_cfg.get("devices"), trainer_cfg.get("accelerator", "auto"))
        precision, line = resolve_precision(trainer_cfg.get("precision"), trainer_cfg.get("accelerator", "auto"),
                                            fp32_reason=trait(self.model, "fp32_reason"))
        if line and self.subcommand in ("fit", "validate", "test"):  # predict's stdout/stderr stay for answers
            print(f"zoo: {line}", file=sys.stderr)
        if precision is not None:
            kwargs["precision"] = precision
        check_precision(precision, trainer_cfg.get("accelerator", "auto"))
        check_strategy(trainer_cfg.get("strategy"), trainer_cfg.get("accelerator", "auto"),
                       bool(trainer_cfg.get("sync_batchnorm", False)))
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if not any(isinstance(c, RunReport) for c in callbacks):
            callbacks.append(RunReport())
        if self.subcommand == "test" and not any(isinstance(c, BaselineComparison) for c in callbacks):
            callbacks.append(BaselineComparison())
        if not any(isinstance(c, Trust) for c in callbacks):
            callbacks.append(Trust(calibration=self.config_value(self.config, "calibration", default="temperature"),
                                   coverage=self.config_value(self.config, "coverage", default=None),
                                   target_accuracy=self.config_value(self.config, "target_accuracy", default=None)))
        if self.subcommand in ("fit", "test") and not any(isinstance(c, DataChecks) for c in callbacks):
            callbacks.append(DataChecks())  # docs/data-checks.md: data report at fit start, label issues at test
        if self.subcommand in ("fit", "test") and not any(isinstance(c, ModelCardWriter) for c in callbacks):
            callbacks.append(ModelCardWriter())  # after Trust and BaselineComparison: it reads their reports
        if self.subcommand == "fit" and not any(isinstance(c, EarlyStoppingNotice) for c in callbacks):
            callbacks.append(EarlyStoppingNotice())  # Lightning's EarlyStopping ends a fit without a word
        monitor = trait(self.model, "monitor")
        if (monitor and trainer_cfg.get("enable_checkpointing", True) is not False
                and not any(isinstance(c, ModelCheckpoint) for c in callbacks)):
            # best only: last.ckpt is LastCheckpoint's, written at every epoch end whatever the best policy
            callbacks.append(ModelCheckpoint(monitor=monitor, mode=trait(self.model, "monitor_mode"),
                                             filename="best", save_last=False, auto_insert_metric_name=False,
                                             enable_version_counter=False))
        if self.subcommand == "predict":
            kwargs.setdefault("enable_progress_bar", False)
            kwargs.setdefault("enable_model_summary", False)
            callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
            if not any(isinstance(c, PredictionWriter) for c in callbacks):
                output = self.config_value(self.config, "output", default="-")
                callbacks.append(PredictionWriter(output=output))
        elif (trainer_cfg.get("enable_progress_bar", True) is not False
              and not any(isinstance(c, ProgressBar) for c in callbacks)):
            if rich_available():
                from zoo.callbacks.progress import ZooProgressBar

                callbacks.append(ZooProgressBar())
        kwargs["callbacks"] = callbacks
        if self.subcommand == "fit" and not trainer_cfg.get("fast_dev_run"):  # a dry run trains for seconds
            self._announce_recipe_time(trainer_cfg.get("max_time"))
        if trainer_cfg.get("logger") in (None, True):
            root = trainer_cfg.get("default_root_dir") or "runs"
            kwargs["logger"] = run_logger(CSVLogger, self._run_location, str(self.subcommand), root,
                                          self._recipe_name())
        if self.subcommand == "fit" and trainer_cfg.get("enable_checkpointing", True) is not False:
            callbacks += default_reliability_callbacks(callbacks, kwargs.get("logger"))
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


def _registry_class_path(name: str) -> str | None:
    """The dotted path of the class a registry name stands for, or None (a dotted path or class name, which
    jsonargparse resolves itself)."""
    if "." in name:
        return None
    from zoo.registry import CALLBACKS, DATAMODULES, MODELS

    for registry in (MODELS, DATAMODULES, CALLBACKS):
        if name in registry and (registry is not CALLBACKS or isinstance(registry.get(name), type)):
            target = registry.get(name)
            return f"{target.__module__}.{target.__qualname__}"
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

    from zoo.cli.quiet import silence_noise
    from zoo.errors import ZooError

    silence_noise()
    from zoo.cli import runs
    from zoo.cli.resume import check_config_files, os_error_message

    runs.forget()
    stopped_by, previous = _exit_codes_on_signals()
    try:
        check_config_files(argv)
        ZooCLI(args=argv)
    except BaseException as err:
        runs.remove_unfinished()  # nothing half-written: directories this command made and did no work in
        if stopped_by:  # after Lightning wrote on_exception.ckpt: say so to a supervisor with 128 + signal
            signum = stopped_by[0]
            print(f"zoo: stopped by {signal.Signals(signum).name}; a fit continues with --resume auto",
                  file=sys.stderr)
            return 128 + signum
        if not isinstance(err, Exception):
            raise
        cause = _zoo_error_in_chain(err, ZooError)
        message = str(cause) if cause is not None else os_error_message(err)
        if message is None or os.environ.get("ZOO_DEBUG"):
            raise
        print(f"zoo: error: {message}", file=sys.stderr)
        return 2
    finally:
        runs.release_locks()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    runs.forget()
    return 0


def _exit_codes_on_signals() -> tuple[list[int], dict[int, Any]]:
    """Record SIGTERM / SIGINT so that the command exits 143 / 130 (not 0: Lightning ends a fit on SIGTERM with a
    bare SystemExit) once the checkpoint is written. SIGINT still raises KeyboardInterrupt; SIGTERM raises
    SystemExit only outside a fit, where Lightning's handler (which calls this one) stops at the next batch end
    and writes on_exception.ckpt first. Returns the list the signal numbers go into and the handlers to restore."""
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if signal.getsignal(signal.SIGTERM) is on_signal:  # no trainer running: stop here, cleaning up
            raise SystemExit(128 + signum)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    return received, previous
