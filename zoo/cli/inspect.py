"""``zoo inspect --config R.yaml``: the data checks of a recipe's datamodule without training (docs/data-checks.md).

    zoo inspect --config recipes/text/bbc_news.yaml
    zoo inspect --config recipes/text/bbc_news.yaml --data.init_args.max_samples 500 --out /tmp/bbc
    zoo inspect --config recipes/text/bbc_news.yaml --ckpt_path runs/bbc_news/version_0/checkpoints/best.ckpt

Prints one line per finding and writes ``data_report.md`` / ``data_report.json``; with ``--ckpt_path`` (a
single-label classifier) also ``label_issues.csv``, the validation and test rows ranked by how likely their label is
wrong (cleanlab on the checkpoint's calibrated probabilities), and the test accuracy with and without the test rows
that repeat earlier ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def data_section(configs: list[Path], overrides: list[str]) -> dict[str, Any]:
    """The recipe's ``data`` section: the YAML files merged in order, then ``--data.KEY VALUE`` overrides."""
    import yaml

    from zoo.errors import ConfigError

    cfg: dict[str, Any] = {}
    for path in configs:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"--config {path}: {err}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {path} must be a YAML mapping (a recipe)")
        cfg = _merge(cfg, loaded)
    data = dict(cfg.get("data") or {})
    args = list(overrides)
    while args:
        flag = args.pop(0)
        key, eq, value = flag.partition("=")
        if not key.startswith("--data."):
            raise ConfigError(f"zoo inspect: unknown option {key}; it takes --config, --ckpt_path, --out, "
                              "and --data.KEY VALUE overrides (e.g. --data.init_args.max_samples 500)")
        if not eq:
            if not args:
                raise ConfigError(f"zoo inspect: {key} needs a value")
            value = args.pop(0)
        node = data
        parts = key[len("--data."):].split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    if "class_path" not in data:
        raise ConfigError(f"--config {', '.join(map(str, configs))}: no data section with a class_path")
    return data


def build_datamodule(data: dict[str, Any]) -> Any:
    import importlib

    from zoo.cli.lightning import _registry_class_path
    from zoo.errors import ConfigError

    name = str(data["class_path"])
    path = _registry_class_path(name) or name
    module, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"data.class_path {name!r} is neither a registered datamodule (`zoo list datamodules`) "
                          "nor an importable class") from None
    try:
        return cls(**dict(data.get("init_args") or {}))
    except TypeError as err:
        raise ConfigError(f"data.init_args do not fit {cls.__name__}: {err}") from None


def _label_issues(ckpt: Path, dm: Any, out: Path) -> None:
    from zoo.callbacks.data_checks import (
        deduplicated_line,
        deduplicated_scores,
        label_issues,
        single_label,
        split_outputs,
    )
    from zoo.checkpoints import load_checkpoint
    from zoo.errors import ConfigError
    from zoo.reporting.data_report import write_label_issues
    from zoo.reporting.io import atomic_write_text

    model = load_checkpoint(ckpt)
    if callable(getattr(model, "bind_data", None)):
        model.bind_data(dm)
    if not single_label(model):
        raise ConfigError(f"--ckpt_path {ckpt}: suspect labels are ranked for single-label classifiers; "
                          f"{type(model).__name__} is not one")
    parts = {}
    for split in ("val", "test"):
        got = split_outputs(model, getattr(dm, f"{split}_dataloader")())
        if got is not None:
            parts[split] = got
    if not parts:
        return
    rows, estimate, looked = label_issues(model, parts)
    path = write_label_issues(rows, out / "label_issues.csv")
    print(f"zoo: label issues: cleanlab estimates {estimate} of {looked} {' + '.join(parts)} labels are wrong; "
          f"{len(rows)} rows ranked in {path}", file=sys.stderr)
    if "test" in parts:
        result = deduplicated_scores(dm, parts["test"])
        if result is not None:
            atomic_write_text(out / "test_deduplicated.json", json.dumps(result, indent=2))
            print(f"zoo: {deduplicated_line(result)}", file=sys.stderr)


def main(argv: list[str]) -> int:
    from zoo.errors import ConfigError

    parser = argparse.ArgumentParser(prog="zoo inspect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--config", type=Path, action="append", required=True,
                        help="recipe YAML (repeat to add overlays, as for zoo fit)")
    parser.add_argument("--ckpt_path", type=Path, default=None,
                        help="a checkpoint of this recipe: also rank suspect labels (label_issues.csv)")
    parser.add_argument("--cross_validate", "--cross-validate", type=int, default=None, metavar="K",
                        help="also rank suspect labels of the train split from K-fold probabilities of the data's "
                             "reference model (label_issues_train.csv)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the reports (default runs/<recipe>/inspect)")
    args, rest = parser.parse_known_args(argv)
    for path in args.config:
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file; `zoo list recipes` lists the shipped ones")
    if args.ckpt_path is not None and not args.ckpt_path.is_file():
        raise ConfigError(f"--ckpt_path {args.ckpt_path}: no such file; expected a .ckpt written by zoo fit")
    data = data_section(args.config, rest)
    from zoo.cli.quiet import silence_noise

    silence_noise()
    from zoo.data.checks import inspect_datamodule, summary_lines
    from zoo.reporting.data_report import write_data_report

    dm = build_datamodule(data)
    report = inspect_datamodule(dm)
    for line in summary_lines(report):
        print(f"zoo: {line}", file=sys.stderr)
    out = args.out or Path("runs") / args.config[0].stem / "inspect"
    for path in write_data_report(report, out):
        print(f"zoo: wrote {path}", file=sys.stderr)
    if args.ckpt_path is not None:
        _label_issues(args.ckpt_path, dm, out)
    if args.cross_validate is not None:
        _train_label_issues(dm, args.cross_validate, out)
    return 0


def _train_label_issues(dm: Any, k: int, out: Path) -> None:
    from zoo.baselines.crossval import cross_validated_probabilities
    from zoo.baselines.references import NoReference
    from zoo.data.checks.label_issues import rank_label_issues
    from zoo.errors import ConfigError
    from zoo.reporting.data_report import write_label_issues

    if k < 2:
        raise ConfigError(f"--cross-validate must be >= 2 folds, got {k}")
    try:
        labels, probs, ids = cross_validated_probabilities(dm, k)
    except (NoReference, KeyError, AttributeError) as err:
        raise ConfigError(f"--cross-validate: {err or 'needs a single-label text or image datamodule'}") from None
    rows, estimate = rank_label_issues(labels, probs, ids, list(dm.class_names), ["train"] * len(ids))
    path = write_label_issues(rows, out / "label_issues_train.csv")
    print(f"zoo: label issues in train ({k}-fold reference model): cleanlab estimates {estimate} of {len(ids)} "
          f"labels are wrong; {len(rows)} rows ranked in {path}", file=sys.stderr)
