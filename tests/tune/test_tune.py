"""`zoo tune`: search spaces, key checks before training, a 4-trial search whose best.yaml reproduces its best
trial, pruning of a clearly worse curve, resume after SIGKILL, and two worker processes on one sqlite study."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from tests.common.tune_helpers import (
    LR_SPACE,
    ROOT,
    finished_params,
    load,
    tiny_recipe,
    tune_process,
    wait_all,
    write_space,
)
from zoo.cli import main
from zoo.errors import ConfigError
from zoo.tune.space import apply, get_key, parse_space, recipe_values


@pytest.fixture(autouse=True)
def _one_thread():
    """The trials' models are tiny: threads only add contention on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- search spaces, no training -------------------------------------------------------------------------------


def test_space_parses_every_kind_and_conditionals_follow_their_key():
    import optuna

    space = parse_space(yaml.safe_load("""
model.init_args.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
data.init_args.max_length: {type: int, low: 64, high: 256, step: 64}
model.init_args.peft:
  type: categorical
  choices: {lora: {method: lora, r: 8}, none: null}
model.init_args.peft.r: {type: int, low: 4, high: 16, step: 4, when: {model.init_args.peft: lora}}
"""))
    seen = set()
    for params in ({"model.init_args.peft": "lora"}, {"model.init_args.peft": "none"}):
        trial = optuna.trial.FixedTrial({"model.init_args.lr": 0.01, "data.init_args.max_length": 128,
                                         "model.init_args.peft.r": 12, **params})
        overrides = space.overrides(space.sample(trial))
        recipe = apply({"model": {"init_args": {"peft": None}}}, overrides)
        seen.add(repr(get_key(recipe, "model.init_args.peft")))
        assert ("model.init_args.peft.r" in overrides) == (params["model.init_args.peft"] == "lora")
    assert seen == {repr({"method": "lora", "r": 12}), "None"}
    # the check samples reach both ends of every range and every choice, conditionals only when active
    samples = space.check_samples()
    assert {s["model.init_args.peft"] for s in samples} == {"lora", "none"}
    assert {s["data.init_args.max_length"] for s in samples} == {64, 256}
    assert all(("model.init_args.peft.r" in s) == (s["model.init_args.peft"] == "lora") for s in samples)


@pytest.mark.parametrize("text, expected", [
    ("model.init_args.lr: {type: float, low: 0, high: 0.1, log: true}", "log distribution needs low > 0"),
    ("model.init_args.lr: {type: float, low: 0.1, high: 0.01}", "low <= high"),
    ("model.init_args.lr: {type: gauss, low: 0.1, high: 0.2}", "type must be one of float, int, categorical"),
    ("model.init_args.lr: {type: float, low: 0.1, hi: 0.2}", "does not take hi"),
    ("data.init_args.batch_size: {type: int, low: 8, high: 64, step: 2.5}", "whole low, high and step"),
    ("model.init_args.lr: {type: categorical, choices: []}", "non-empty list"),
    ("a.b: {type: int, low: 1, high: 2, when: {a.c: x}}", "categorical key listed before this one"),
    ("model.init_args.lr: 0.1", "expected a distribution"),
])
def test_invalid_distribution_names_the_key_and_what_is_accepted(text, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        parse_space(yaml.safe_load(text), source="space.yaml")
    assert "space.yaml: " in str(err.value)


def test_list_selectors_pick_a_callback_by_name_and_the_recipe_defaults_become_a_trial():
    recipe = {"trainer": {"callbacks": [{"class_path": "lightning.pytorch.callbacks.EarlyStopping"},
                                        {"class_path": "fgm", "init_args": {"epsilon": 1.0}}]}}
    out = apply(recipe, {"trainer.callbacks[FGM].init_args.epsilon": 0.5,
                         "trainer.callbacks[early_stopping].init_args.patience": 3})
    assert out["trainer"]["callbacks"][1]["init_args"]["epsilon"] == 0.5
    assert out["trainer"]["callbacks"][0]["init_args"]["patience"] == 3
    assert recipe["trainer"]["callbacks"][1]["init_args"]["epsilon"] == 1.0  # the recipe itself is untouched
    with pytest.raises(ConfigError, match="no item with class_path 'pgd'.*it has: .*EarlyStopping, fgm"):
        apply(recipe, {"trainer.callbacks[pgd].init_args.epsilon": 0.5})
    space = parse_space({"trainer.callbacks[fgm].init_args.epsilon": {"type": "float", "low": 0.1, "high": 2.0}})
    assert recipe_values(space, recipe) == {"trainer.callbacks[fgm].init_args.epsilon": 1.0}


# -- the command ----------------------------------------------------------------------------------------------


def test_invalid_key_fails_before_any_trial_with_the_nearest_keys(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    space = write_space(tmp_path, LR_SPACE + "model.init_args.weight_decy: {type: float, low: 0.0, high: 0.1}\n")
    assert main(["tune", "--config", str(recipe), "--search", str(space), "--n-trials", "2", "--inline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "key model.init_args.weight_decy is not accepted" in err and "did you mean: weight_decay" in err
    assert not Path("runs").exists()  # nothing trained, nothing half-written
    bad_range = write_space(tmp_path, "trainer.max_epochs: [3, ten]\n", "range.yaml")
    assert main(["tune", "--config", str(recipe), "--search", str(bad_range), "--n-trials", "2"]) == 2
    assert "key trainer.max_epochs is not accepted" in capsys.readouterr().err


@pytest.mark.parametrize("extra, expected", [
    ([], "needs --n-trials N or --timeout"),
    (["--n-trials", "2", "--objectives", "params,speed"], "--objectives speed: accepted: params, latency"),
    (["--n-trials", "2", "--pruner", "medain"], "--pruner 'medain': accepted: median"),
    (["--n-trials", "2", "--set", "trainer.max_epochs"], "--set 'trainer.max_epochs': expected KEY=VALUE"),
    (["--n-trials", "2", "--n-jobs", "2", "--inline", "--set", "trainer.max_epochs=1"], "cannot be combined"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, extra, expected):
    recipe, space = tiny_recipe(tmp_path), write_space(tmp_path, "model.init_args.scheduler: [cosine, none]\n")
    assert main(["tune", "--config", str(recipe), "--search", str(space), *extra]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_password_of_a_storage_url_is_never_written():
    from zoo.tune.study import _hide_password

    assert _hide_password("postgresql+psycopg2://zoo:s3cret@db:5432/zoo") == "postgresql+psycopg2://zoo:***@db:5432/zoo"
    assert _hide_password("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


def _best_val(run_dir: Path, metric: str) -> float:
    rows = list(csv.DictReader(open(next(run_dir.rglob("metrics.csv")))))
    return max(float(r[metric]) for r in rows if r.get(metric))


@pytest.mark.slow
def test_four_trials_write_best_yaml_that_reproduces_the_best_trial(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    space = write_space(tmp_path, LR_SPACE + "model.init_args.scheduler: [cosine, none]\n")
    assert main(["tune", "--config", str(recipe), "--search", str(space), "--n-trials", "4", "--inline",
                 "--pruner", "none", "--baseline", "--sampler-seed", "0"]) == 0
    out_dir = Path("runs/tune/tiny")
    rows = list(csv.DictReader(open(out_dir / "trials.csv")))
    assert [r["state"] for r in rows] == ["COMPLETE"] * 4
    assert rows[0]["model.init_args.lr"] == "0.003" and rows[0]["model.init_args.scheduler"] == "cosine"  # baseline
    assert len({r["seed"] for r in rows}) == 4  # each trial its own seed
    best = max(rows, key=lambda r: float(r["val/f1_macro"]))
    assert f"best trial {best['number']}: val/f1_macro=" in capsys.readouterr().out
    for plot in ("history", "importances", "parallel_coordinates", "intermediate_values"):
        assert (out_dir / "plots" / f"{plot}.png").stat().st_size > 1000
    # the winner is an ordinary recipe: same seed, same values, same metric
    best_yaml = out_dir / "best.yaml"
    assert yaml.safe_load(best_yaml.read_text())["seed_everything"] == int(best["seed"])
    assert main(["fit", "--config", str(best_yaml)]) == 0
    assert _best_val(Path("runs/best"), "val/f1_macro") == pytest.approx(float(best["val/f1_macro"]), abs=1e-6)
    # --report redraws from the storage alone
    (out_dir / "best.yaml").unlink()
    assert main(["tune", "--report", str(out_dir), "--no-plots"]) == 0
    assert (out_dir / "best.yaml").read_text().count("seed_everything") == 1


@pytest.mark.slow
def test_pruning_stops_a_trial_with_a_clearly_worse_curve(tmp_path):
    from zoo.cli.lightning import run as fit
    from zoo.tune.space import load_space
    from zoo.tune.study import TuneSettings, run_search

    recipe = yaml.safe_load(tiny_recipe(tmp_path, max_epochs=4, limit_val_batches=2).read_text())
    recipe["model"]["init_args"]["scheduler"] = "none"
    space = load_space(write_space(tmp_path, "model.init_args.lr: {type: float, low: 0.001, high: 100.0, log: true}"))
    good = [{"model.init_args.lr": 0.01}, {"model.init_args.lr": 0.02}]
    bad = {"model.init_args.lr": 80.0}  # the weights blow up at once
    settings = TuneSettings(recipe=recipe, space=space, out_dir=tmp_path / "tune", study_name="prune",
                            metric="val/loss", mode="min", n_trials=3, runner="inline", fit=fit,
                            pruner=("median", 2, 0), enqueue=[*good, bad], quiet=True)
    study = run_search(settings, log=lambda line: None)
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert trials[2].params == bad and trials[2].user_attrs["steps"] < 4  # stopped early
    assert all(t.user_attrs["steps"] == 4 for t in trials[:2])
    assert max(trials[2].intermediate_values.values()) > trials[0].value


def _states(db: Path, study: str) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as con:
            return [r[0] for r in con.execute(
                "SELECT t.state FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = ?"
                " ORDER BY t.number", (study,))]
    except sqlite3.OperationalError:  # the search has not created its tables yet
        return []


@pytest.mark.subprocess
@pytest.mark.timeout(900)
def test_sigkill_during_a_trial_then_rerun_completes_without_losing_or_double_counting(tmp_path):
    held = tmp_path / "second_trial_is_training"
    hold = {"class_path": "tests.common.tune_helpers.HoldTheSecondTrial", "init_args": {"marker": str(held)}}
    recipe = tiny_recipe(tmp_path, max_epochs=3, callbacks=[hold])
    space = write_space(tmp_path, LR_SPACE)
    args = ["--config", str(recipe), "--search", str(space), "--n-trials", "3", "--inline", "--heartbeat", "1",
            "--pruner", "none", "--no-plots", "--study-name", "kill", "--dir", str(tmp_path / "tune")]
    db = tmp_path / "tune" / "study.db"
    proc = tune_process(args, tmp_path, tmp_path / "first.log")
    try:
        # the first trial complete, the second held after one step until this SIGKILL
        deadline = time.monotonic() + 600  # a bound only: the test waits for the marker, not for a moment
        while not held.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert held.exists() and proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _states(db, "kill") == ["COMPLETE", "RUNNING"]
    assert main(["tune", *args]) == 0  # the same command
    study = load(f"sqlite:///{db}", "kill")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1
    dead = next(t for t in study.trials if t.state.name == "FAIL")
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number)
    assert retry.state.name == "COMPLETE" and retry.params == dead.params  # re-queued, not lost
    assert len(set(finished_params(study))) == 3  # not counted twice


@pytest.mark.subprocess
@pytest.mark.timeout(900)
def test_two_processes_share_one_sqlite_study_and_stop_at_exactly_n(tmp_path):
    recipe = tiny_recipe(tmp_path, max_epochs=1)
    space = write_space(tmp_path, LR_SPACE + "model.init_args.backbone_kwargs.width: [2, 4]\n")
    common = ["--config", str(recipe), "--search", str(space), "--n-trials", "5", "--inline", "--no-plots",
              "--study-name", "shared", "--dir", str(tmp_path / "tune"), "--heartbeat", "2",
              "--objectives", "params,latency"]
    workers = [tune_process([*common, "--sampler-seed", str(i)], tmp_path, tmp_path / f"w{i}.log") for i in range(2)]
    wait_all(workers, tmp_path)
    study = load(f"sqlite:///{tmp_path / 'tune' / 'study.db'}", "shared")
    params = finished_params(study)
    assert len(params) == 5 and len(set(params)) == 5
    assert {t.user_attrs.get("run_dir") for t in study.trials if t.state.name == "COMPLETE"} != {None}
    # both processes ran trials
    assert all("trial " in (tmp_path / f"w{i}.log").read_text() for i in range(2))
    # multi-objective: the Pareto front of val/f1_macro against the parameter count is reported
    assert main(["tune", "--report", str(tmp_path / "tune")]) == 0
    pareto = list(csv.DictReader(open(tmp_path / "tune" / "pareto.csv")))
    assert pareto and set(pareto[0]) >= {"val/f1_macro", "params", "latency"}
    assert all(float(r["latency"]) > 0 and int(float(r["params"])) > 0 for r in pareto)
    assert (tmp_path / "tune" / "plots" / "pareto_front.png").exists()


@pytest.mark.subprocess
@pytest.mark.timeout(900)
def test_parallel_trials_run_as_zoo_fit_processes(tmp_path):
    recipe = tiny_recipe(tmp_path, max_epochs=1)
    space = write_space(tmp_path, LR_SPACE)
    assert main(["tune", "--config", str(recipe), "--search", str(space), "--n-trials", "2", "--n-jobs", "2",
                 "--no-plots"]) == 0
    study = load(f"sqlite:///{Path('runs/tune/tiny/study.db').resolve()}", "tiny")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for t in study.trials:
        log = Path(t.user_attrs["run_dir"]) / "fit.log"
        assert log.exists() and list(Path(t.user_attrs["run_dir"]).rglob("metrics.csv"))


@pytest.mark.parametrize("search, recipe", [
    ("text_lora.yaml", "text/bbc_news_lora.yaml"),
    ("text_ngram.yaml", "text/tweets_sentiment_fasttext.yaml"),
    ("image.yaml", "vision/digits.yaml"),
    ("bpr.yaml", "recsys/bpr_ml100k.yaml"),
    ("lightgcn.yaml", "recsys/lightgcn_ml100k.yaml"),
])
def test_shipped_search_spaces_are_accepted_by_their_recipes(search, recipe):
    from zoo.cli.tune import check_space
    from zoo.tune.space import load_space

    space = load_space(ROOT / "recipes/search" / search)
    recipe_dict = yaml.safe_load((ROOT / "recipes" / recipe).read_text())
    assert check_space(recipe_dict, space, recipe).__name__
    assert recipe_values(space, recipe_dict) is not None  # --baseline can run the recipe's own values


def test_baseline_reads_the_parsed_recipe_and_refuses_a_value_the_space_cannot_hold(tmp_path, capsys):
    """`zoo tune --baseline` compares the parsed recipe (tuples, model defaults) with the space; a recipe value the
    space cannot hold stops the search with its key instead of silently dropping the baseline trial."""
    from zoo.cli.tune import _parse
    from zoo.tune.space import load_space, outside_space

    recipe = yaml.safe_load((ROOT / "recipes/text/tweets_sentiment_fasttext.yaml").read_text())
    parsed = _parse(recipe)[1].as_dict()
    space = load_space(ROOT / "recipes/search/text_ngram.yaml")
    assert recipe_values(space, parsed)["data.init_args.word_ngrams"] == "up_to_bigrams"
    narrow = write_space(tmp_path, "data.init_args.word_ngrams: {type: categorical, choices: {uni: [1, 1]}}")
    assert outside_space(load_space(narrow), parsed) == ("data.init_args.word_ngrams", [1, 2])
    code = main(["tune", "--config", str(ROOT / "recipes/text/tweets_sentiment_fasttext.yaml"), "--search",
                 str(narrow), "--n-trials", "1", "--baseline", "--dir", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 2 and "--baseline: the recipe's data.init_args.word_ngrams is [1, 2]" in err
    assert not (tmp_path / "t").exists()


def test_a_resumed_search_with_the_same_sampler_seed_does_not_repeat_parameter_sets(tmp_path):
    """Re-running a stopped search with its --sampler-seed must not replay the first process's random draws."""
    from zoo.tune.space import load_space
    from zoo.tune.study import TuneSettings, open_study

    space = load_space(write_space(tmp_path, "model.init_args.lr: {type: float, low: 0.001, high: 1.0, log: true}\n"
                                             "data.init_args.batch_size: [8, 16, 32, 64]"))
    settings = TuneSettings(recipe={}, space=space, out_dir=tmp_path, study_name="resumed", metric="val/loss",
                            mode="min", sampler_seed=0, quiet=True)

    def draw(n: int) -> list[dict]:
        study = open_study(settings)  # a new process: a new sampler from the same --sampler-seed
        out = []
        for _ in range(n):
            trial = study.ask()
            params = space.sample(trial)
            study.tell(trial, 1.0)
            out.append(params)
        return out

    first, second = draw(3), draw(3)
    assert all(p not in first for p in second), (first, second)
    (tmp_path / "again").mkdir()
    fresh = TuneSettings(recipe={}, space=space, out_dir=tmp_path / "again", study_name="resumed",
                         metric="val/loss", mode="min", sampler_seed=0, quiet=True)
    settings = fresh
    assert draw(3) == first  # a new study with the same seed still reproduces the first draws


def test_workers_with_neighbouring_seeds_do_not_meet_on_one_sampler_seed(tmp_path):
    """Worker seeds 0 and 1, the second joining an empty study and the first a study with one trial, draw
    different parameters (a seed derived as seed + trials would give both the same)."""
    from zoo.tune.space import load_space
    from zoo.tune.study import TuneSettings, open_study

    space = load_space(write_space(tmp_path, "model.init_args.lr: {type: float, low: 0.001, high: 1.0, log: true}"))

    def first_draw(folder: str, seed: int, before: int) -> dict:
        (tmp_path / folder).mkdir()
        settings = TuneSettings(recipe={}, space=space, out_dir=tmp_path / folder, study_name="s", metric="val/loss",
                                mode="min", sampler_seed=seed, quiet=True)
        study = open_study(settings)
        for _ in range(before):  # trials another worker already added
            lr = __import__("optuna").distributions.FloatDistribution(0.001, 1.0, log=True)
            study.tell(study.ask({"model.init_args.lr": lr}), 1.0)
        study = open_study(settings)
        return space.sample(study.ask())

    assert first_draw("a", 1, 0) != first_draw("b", 0, 1)
