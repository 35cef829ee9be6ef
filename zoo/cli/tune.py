"""``zoo tune``: hyperparameter search over any recipe key (Optuna), resumable, prunable, shared through a database.

    zoo tune --config recipes/text/bbc_news_lora.yaml --search recipes/search/text_lora.yaml --n-trials 30
    zoo tune ... --storage postgresql://user@db/zoo --study-name bbc   # the same command on several machines
    zoo fit --config runs/tune/bbc_news_lora/best.yaml                 # the winner, as an ordinary recipe
    zoo tune --report runs/tune/bbc_news_lora                          # redraw best.yaml, trials.csv, plots

Every searched key is checked against the recipe's parser before any trial runs (both ends of every range and
every choice), so a misspelled key fails in a second with the nearest accepted keys. See docs/tune.md.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, ZooError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo tune", description="Hyperparameter search over recipe keys (Optuna).",
                                allow_abbrev=False)
    p.add_argument("--config", help="the recipe to tune (YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change the recipe before searching (YAML value), e.g. trainer.max_epochs=5; repeatable")
    p.add_argument("--search", help="search space: YAML mapping recipe keys to distributions (recipes/search/)")
    p.add_argument("--n-trials", type=int, help="finished trials the study should hold (all workers together)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--storage", help="SQLAlchemy URL of the study (default: sqlite file in the tune directory)")
    p.add_argument("--study-name", help="study name (default: the recipe's file name)")
    p.add_argument("--dir", help="tune directory (default: runs/tune/STUDY)")
    p.add_argument("--n-jobs", type=int, default=1, help="parallel trials on this machine, each its own process")
    p.add_argument("--metric", help="validation metric to optimize (default: the model's headline metric)")
    p.add_argument("--direction", choices=("max", "min"), help="of --metric (default: the model's)")
    p.add_argument("--objectives", default="", help="also minimize, comma separated: params, latency")
    p.add_argument("--pruner", default="median", help="median, percentile, hyperband, successive_halving, none")
    p.add_argument("--pruner-startup-trials", type=int, default=5, help="finished trials before pruning starts")
    p.add_argument("--pruner-warmup-steps", type=int, default=0, help="validations of a trial before it may be pruned")
    p.add_argument("--baseline", action="store_true", help="run the recipe's own values as the first trial")
    p.add_argument("--inline", action="store_true", help="run trials in this process (no import cost per trial)")
    p.add_argument("--heartbeat", type=int, default=30, help="seconds; a trial silent for twice this is re-queued")
    p.add_argument("--sampler-seed", type=int, help="seed of the TPE sampler (give each worker its own)")
    p.add_argument("--no-plots", action="store_true", help="write best.yaml and trials.csv only")
    p.add_argument("--report", metavar="DIR", help="only rewrite best.yaml, trials.csv and plots of a tune directory")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.report:
        return _report(args)
    if not args.config or not args.search:
        raise ConfigError("zoo tune needs --config RECIPE.yaml and --search SPACE.yaml (or --report DIR)")
    if args.n_trials is None and args.timeout is None:
        raise ConfigError("zoo tune needs --n-trials N or --timeout SECONDS (a search without either never ends)")
    if args.n_trials is not None and args.n_trials < 1:
        raise ConfigError(f"--n-trials must be at least 1, got {args.n_trials}")
    if args.n_jobs < 1:
        raise ConfigError(f"--n-jobs must be at least 1, got {args.n_jobs}")
    if args.inline and args.n_jobs > 1:
        raise ConfigError("--n-jobs > 1 runs each trial in its own process; it cannot be combined with --inline")
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    bad = [o for o in objectives if o not in ("params", "latency")]
    if bad:
        raise ConfigError(f"--objectives {','.join(bad)}: accepted: params, latency")
    from zoo.tune.reporter import PRUNERS

    if args.pruner not in PRUNERS:
        raise ConfigError(f"--pruner {args.pruner!r}: accepted: {', '.join(PRUNERS)}")

    from zoo.tune.space import load_space, outside_space

    recipe = _with_settings(_load_recipe(args.config), args.set)
    space = load_space(args.search)
    model_class = check_space(recipe, space, args.config)
    if args.baseline:  # the values a plain `zoo fit` of the recipe uses, the model's defaults included
        recipe_defaults = _parse(recipe)[1].as_dict()
        outside = outside_space(space, recipe_defaults)
        if outside is not None:  # else the baseline trial would be left out without a word
            raise ConfigError(f"--baseline: the recipe's {outside[0]} is {outside[1]!r}, which {args.search} cannot "
                              "hold; add it to the search space (a choice or a range that contains it)")
    metric, mode = _headline(model_class, args.metric, args.direction)
    study_name = args.study_name or Path(args.config).stem
    out_dir = Path(args.dir or Path("runs") / "tune" / study_name)
    return _search(args, recipe, space, out_dir, study_name, metric, mode, objectives,
                   recipe_defaults if args.baseline else None)


def _search(args: argparse.Namespace, recipe: dict[str, Any], space: Any, out_dir: Path, study_name: str,
            metric: str, mode: str, objectives: list[str], recipe_defaults: dict[str, Any] | None) -> int:
    import time

    from zoo.tune.report import save_settings, write_outputs
    from zoo.tune.study import TuneSettings, _hide_password, finished, run_search

    fit = None
    if args.inline:
        from zoo.cli.lightning import run as fit
    settings = TuneSettings(recipe=recipe, space=space, out_dir=out_dir, study_name=study_name, metric=metric,
                            mode=mode, storage=args.storage, n_trials=args.n_trials, timeout=args.timeout,
                            n_jobs=args.n_jobs, objectives=objectives,
                            pruner=(args.pruner, args.pruner_startup_trials, args.pruner_warmup_steps),
                            heartbeat=args.heartbeat, runner="inline" if args.inline else "subprocess", fit=fit,
                            baseline=args.baseline, baseline_recipe=recipe_defaults,
                            sampler_seed=args.sampler_seed)
    save_settings(out_dir, {"storage": _hide_password(settings.storage_url), "study_name": study_name,
                            "metric": metric, "mode": mode, "objectives": objectives, "config": str(args.config),
                            "search": str(args.search)})
    start = time.monotonic()
    print(f"zoo tune: study {study_name!r} in {_hide_password(settings.storage_url)}; "
          f"optimizing {metric} ({mode}){''.join(f', {o} (min)' for o in objectives)}", file=sys.stderr)
    study = run_search(settings, log=lambda line: print(f"zoo tune: {line}", file=sys.stderr))
    summary = write_outputs(study, out_dir, plots=not args.no_plots)
    print(f"zoo tune: {finished(study)} finished trials in the study ({time.monotonic() - start:.0f} s here); "
          f"results in {out_dir}", file=sys.stderr)
    _print_summary(summary, out_dir)
    return 0


def _print_summary(summary: dict[str, Any], out_dir: Path) -> None:
    if "best_number" in summary:
        values = ", ".join(f"{k}={v:.6g}" for k, v in summary["best_values"].items())
        print(f"best trial {summary['best_number']}: {values}")
        for key, value in summary["best_params"].items():
            print(f"  {key}: {value}")
        print(f"zoo fit --config {out_dir / 'best.yaml'}")
    else:
        print("no trial finished")


def _report(args: argparse.Namespace) -> int:
    import optuna

    from zoo.tune.report import load_settings, write_outputs
    from zoo.tune.study import open_storage

    out_dir = Path(args.report)
    saved = load_settings(out_dir) if (out_dir / "tune.json").exists() or not args.storage else {}
    url = args.storage or saved.get("storage", "")
    if "***" in url:
        raise ConfigError(f"--report {out_dir}: the storage URL has a password; give it again with --storage")
    name = args.study_name or saved.get("study_name")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        raise ZooError(f"--report {out_dir}: no study {name!r} in {url}") from None
    _print_summary(write_outputs(study, out_dir, plots=not args.no_plots), out_dir)
    return 0


def _load_recipe(path: str) -> dict[str, Any]:
    import yaml

    try:
        recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"--config {path}: not valid YAML ({err})") from None
    if not isinstance(recipe, dict):
        raise ConfigError(f"--config {path}: expected a recipe mapping (model, data, trainer)")
    return recipe


def _with_settings(recipe: dict[str, Any], settings: list[str]) -> dict[str, Any]:
    import yaml

    from zoo.tune.space import apply

    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. trainer.max_epochs=5")
        recipe = apply(recipe, {key.strip(): yaml.safe_load(value)})
    return recipe


def check_space(recipe: dict[str, Any], space: Any, recipe_name: str) -> type:
    """Parses the recipe with every searched key at both ends of its range and each of its choices, as
    ``zoo fit`` would, before any trial runs; returns the model class. A key the recipe does not accept is named
    with the nearest accepted keys."""
    from zoo.tune.space import apply

    model_class: type | None = None
    for chosen in space.check_samples():
        try:
            recipe_i = apply(recipe, space.overrides(chosen))
        except ConfigError as err:
            raise ConfigError(f"{space.source}: {err}") from None
        error, config = _parse(recipe_i)
        if error is not None:
            culprit = _culprit(recipe, space, chosen)
            where = f"key {culprit}" if culprit else "the search"
            raise ConfigError(f"{space.source}: {where} is not accepted by {recipe_name}: {error}")
        model_class = model_class or _model_class(config)
    assert model_class is not None
    return model_class


def _culprit(recipe: dict[str, Any], space: Any, chosen: dict[str, Any]) -> str | None:
    from zoo.tune.space import apply

    overrides = space.overrides(chosen)
    for key, value in overrides.items():
        if _parse_error(apply(recipe, {key: value})) is not None:
            return key
    return None


class _Parsed(Exception):
    pass


def _parse_error(recipe: dict[str, Any]) -> str | None:
    """None when ``zoo fit`` would accept the recipe, else the parser's explanation (with close matches)."""
    return _parse(recipe)[0]


def _parse(recipe: dict[str, Any]) -> tuple[str | None, Any]:
    from zoo.cli.lightning import ZooCLI, _explain

    class _ParseOnly(ZooCLI):
        def parse_arguments(self, parser: Any, args: Any) -> None:
            parser.exit_on_error = False
            try:
                self.config = parser.parse_object(args)
            except Exception as err:  # jsonargparse's ArgumentError and the value errors it wraps
                message = _explain(str(err), parser)
                hints = [line for line in message.splitlines() if "did you mean" in line or "Accepted" in line]
                raise _Parsed("; ".join(hints) if hints else message.strip(), None) from None
            raise _Parsed(None, self.config)

    try:
        _ParseOnly(args=copy.deepcopy(recipe), run=False)
    except _Parsed as done:
        return done.args[0], done.args[1]
    raise AssertionError("the recipe parser returned without a result")


def _model_class(config: Any) -> type:
    import importlib

    path = str(config.model.class_path)  # resolved by the parser: registry and class names become dotted paths
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _headline(model_class: type, metric: str | None, direction: str | None) -> tuple[str, str]:
    from zoo.contract import trait

    return metric or trait(model_class, "monitor"), direction or trait(model_class, "monitor_mode")
