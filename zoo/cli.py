"""``zoo``: LightningCLI with zoo defaults, plus ``zoo list``.

    zoo fit --config recipes/vision/digits.yaml
    zoo test --config recipes/vision/digits.yaml --ckpt_path runs/digits/version_0/checkpoints/best.ckpt
    zoo predict --config recipes/vision/digits.yaml --ckpt_path ... > predictions.csv
    zoo list models|backbones|datasets|callbacks|recipes

Defaults added to every run (each only when the config has none of its kind): a CSV logger writing to
``runs/<recipe name>/version_N``, a ``ModelCheckpoint`` on the model's headline metric (``best.ckpt`` and
``last.ckpt``), a :class:`~zoo.callbacks.reporting.RunReport` (curves, confusion matrix, report) and, for
``predict``, a :class:`~zoo.callbacks.reporting.PredictionWriter` to ``--output`` (standard output by default).
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from zoo import __version__

LIST_KINDS = ("models", "backbones", "datasets", "callbacks", "datamodules", "recipes")


def recipe_roots() -> list[Path]:
    here = Path.cwd() / "recipes"
    repo = Path(__file__).resolve().parent.parent / "recipes"
    return [p for p in dict.fromkeys([here, repo]) if p.is_dir()]


def list_recipes() -> list[str]:
    out: list[str] = []
    for root in recipe_roots():
        out += [str(p.relative_to(root.parent)) for p in sorted(root.rglob("*.yaml"))]
    return sorted(dict.fromkeys(out))


class ZooArgumentParser(LightningArgumentParser):
    """Adds close-match suggestions to jsonargparse's errors about unknown keys."""

    def error(self, message: str, *args: Any, **kwargs: Any) -> Any:
        return super().error(_explain(message, self), *args, **kwargs)


def _known_keys(parser: Any) -> list[str]:
    keys = []
    for action in getattr(parser, "_actions", []):
        dest = getattr(action, "dest", "")
        if dest and dest not in ("help", "config", "print_config"):
            keys.append(dest)
    return keys


def _explain(message: str, parser: Any) -> str:
    hints = []
    for bad in re.findall(r"""(?:key|Key|keys|argument)s?\s+["']([\w.\-]+)["']""", message):
        leaf = bad.rsplit(".", 1)[-1]
        candidates = _known_keys(parser)
        close = difflib.get_close_matches(bad, candidates, n=3, cutoff=0.6)
        close += [c for c in difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1] for k in candidates], n=3, cutoff=0.7)
                  if c not in close]
        if close:
            hints.append(f"'{bad}' is not an accepted key; did you mean: {', '.join(close)}?")
    if hints:
        message = message.rstrip() + "\n" + "\n".join(hints)
    return message + "\nRun `zoo <subcommand> --help` (e.g. `zoo fit --help`, `zoo fit --model.help ImageClassifier`) for accepted keys."


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

        from zoo.callbacks.reporting import PredictionWriter, RunReport

        trainer_cfg = self._get(self.config_init, "trainer", default={})
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if not any(isinstance(c, RunReport) for c in callbacks):
            callbacks.append(RunReport())
        monitor = getattr(self.model, "monitor", None)
        if (monitor and trainer_cfg.get("enable_checkpointing", True) is not False
                and not any(isinstance(c, ModelCheckpoint) for c in callbacks)):
            callbacks.append(ModelCheckpoint(monitor=monitor, mode=getattr(self.model, "monitor_mode", "min"),
                                             filename="best", save_last=True, auto_insert_metric_name=False))
        if self.subcommand == "predict":
            kwargs.setdefault("enable_progress_bar", False)
            kwargs.setdefault("enable_model_summary", False)
            callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
            if not any(isinstance(c, PredictionWriter) for c in callbacks):
                output = self._get(self.config, "output", default="-")
                callbacks.append(PredictionWriter(output=output))
        kwargs["callbacks"] = callbacks
        if trainer_cfg.get("logger") in (None, True):
            root = trainer_cfg.get("default_root_dir") or "runs"
            kwargs["logger"] = CSVLogger(save_dir=root, name=self._recipe_name())
        return super().instantiate_trainer(**kwargs)


def _install_registry_names() -> None:
    """Let YAML name a model or datamodule by registry name (``class_path: image_classifier``) as well as by
    class name or dotted path: jsonargparse resolves short names through this function."""
    from jsonargparse import _typehints

    if getattr(_typehints, "_zoo_patched", False):
        return
    original = _typehints.resolve_class_path_by_name

    def resolve(cls: Any, name: str) -> str:
        if isinstance(name, str) and "." not in name:
            from zoo.registry import CALLBACKS, DATAMODULES, MODELS

            for registry in (MODELS, DATAMODULES, CALLBACKS):
                if name in registry and (registry is not CALLBACKS or isinstance(registry.get(name), type)):
                    target = registry.get(name)
                    return f"{target.__module__}.{target.__qualname__}"
        return original(cls, name)

    _typehints.resolve_class_path_by_name = resolve
    _typehints._zoo_patched = True


def run_list(argv: list[str]) -> int:
    import argparse

    from zoo import registry

    parser = argparse.ArgumentParser(prog="zoo list", description="List what zoo has registered.")
    parser.add_argument("kind", choices=LIST_KINDS)
    parser.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'resnet*'")
    args = parser.parse_args(argv)
    if args.kind == "recipes":
        for name in list_recipes():
            print(name)
        return 0
    reg = {"models": registry.MODELS, "backbones": registry.BACKBONES, "datasets": registry.DATASETS,
           "callbacks": registry.CALLBACKS, "datamodules": registry.DATAMODULES}[args.kind]
    entries = [e for e in reg.entries() if e.name in set(reg.list(args.pattern))]
    width = max([len(e.name) for e in entries] + [4])
    for e in entries:
        target = getattr(e.fn, "__qualname__", "")
        extra = f"  [{e.fn.__module__}.{target}]" if isinstance(e.fn, type) else ""
        print(f"{e.name:<{width}}  {e.summary}{extra}")
    return 0


def main(argv: list[str] | None = None) -> Any:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "list":
        return run_list(argv[1:])
    if argv and argv[0] in ("--version", "-V"):
        print(f"zoo {__version__}")
        return 0
    ZooCLI(args=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
