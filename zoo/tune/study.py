"""The search loop: an Optuna study in an SQLAlchemy storage, each trial an ordinary ``zoo fit`` of the recipe
with the trial's values, in its own run directory, with its own seed.

Counting: a search asked for N trials ends when the study holds N COMPLETE or PRUNED trials, however many
workers (``--n-jobs`` threads, processes, machines) share it. A worker that dies leaves a RUNNING trial whose
heartbeat stops; the next worker to look marks it FAIL and Optuna's ``RetryFailedTrialCallback`` queues the same
parameters again, so the trial is neither lost nor counted twice. A trial asked for while the last slots are
taken by others (a race between workers) is closed as FAIL with ``zoo_surplus`` before it samples anything.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.compat import optuna_trial_id
from zoo.errors import ZooError
from zoo.tune.reporter import ENV, _engine_kwargs, make_pruner
from zoo.tune.space import SearchSpace, apply, recipe_values

SURPLUS = "zoo_surplus"
RECIPE = "zoo_recipe"


class TrialError(ZooError):
    """A trial's ``zoo fit`` failed; the trial is marked FAIL and the search goes on."""


class _Surplus(Exception):
    pass


@dataclass
class TuneSettings:
    recipe: dict[str, Any]
    space: SearchSpace
    out_dir: Path
    study_name: str
    metric: str
    mode: str = "max"  # of the metric: "max" or "min"
    storage: str | None = None  # SQLAlchemy URL; default: sqlite file in out_dir
    n_trials: int | None = None
    timeout: float | None = None
    n_jobs: int = 1
    objectives: list[str] = field(default_factory=list)  # also minimized: "params", "latency"
    pruner: tuple[str, int, int] = ("median", 5, 0)  # name, startup trials, warm-up steps
    heartbeat: int = 30  # seconds; a trial silent for twice this is taken as dead
    max_retry: int = 3
    runner: str = "subprocess"  # or "inline": in this process, through `fit`
    fit: Callable[[list[str]], int] | None = None  # the `zoo fit` entry point for inline trials
    enqueue: list[dict[str, Any]] = field(default_factory=list)  # stored values tried first
    baseline: bool = False  # try the recipe's own values first
    baseline_recipe: dict[str, Any] | None = None  # where to read them: the parsed recipe, model defaults included
    sampler_seed: int | None = None
    max_failures: int = 3  # consecutive failed trials of one worker before it gives up
    quiet: bool = False

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out_dir / 'study.db').resolve()}"

    @property
    def directions(self) -> list[str]:
        return ["maximize" if self.mode == "max" else "minimize"] + ["minimize"] * len(self.objectives)


def open_storage(url: str, heartbeat: int | None = None, max_retry: int = 3) -> Any:
    import optuna

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental since 2.8
    kwargs: dict[str, Any] = {}
    if heartbeat:
        # Optuna 4.9 renamed the retry callback and its argument; the old names still work before 6.0
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        name = "heartbeat_stale_trial_callback" if retry else "failed_trial_callback"
        retry = retry or optuna.storages.RetryFailedTrialCallback
        kwargs = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat, name: retry(max_retry=max_retry)}
    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url), **kwargs)
        except Exception as err:  # SQLAlchemy / driver errors: name the storage, not a traceback
            # workers starting together race to create the tables (PostgreSQL: "type ... already exists");
            # the loser finds them made on the next try
            if attempt == 3:
                raise ZooError(f"--storage {_hide_password(url)}: cannot open ({type(err).__name__}: "
                               f"{str(err).splitlines()[0]})") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def open_study(settings: TuneSettings) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(settings.storage_url, settings.heartbeat, settings.max_retry)
    sampler = optuna.samplers.TPESampler(seed=settings.sampler_seed)
    pruner = make_pruner(*settings.pruner) if len(settings.directions) == 1 else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=settings.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                directions=settings.directions, load_if_exists=True)
    if list(study.directions) != [optuna.study.StudyDirection[d.upper()] for d in settings.directions]:
        raise ZooError(f"study {settings.study_name!r} in {_hide_password(settings.storage_url)} optimizes "
                       f"{[d.name.lower() for d in study.directions]}, not {settings.directions}; "
                       "use another --study-name or the same objectives")
    if settings.sampler_seed is not None and study.trials:
        # The same --sampler-seed on a resumed search would replay the first process's random draws and repeat
        # its parameter sets; continue from a seed of its own, still reproducible from the seed and the study.
        # Mixed, not added: workers seeded 0 and 1 joining at 1 and 0 trials must not meet on one seed.
        import numpy as np

        mixed = int(np.random.SeedSequence([settings.sampler_seed, len(study.trials)]).generate_state(1)[0])
        study.sampler = optuna.samplers.TPESampler(seed=mixed)
    study.set_user_attr("zoo_metric", settings.metric)
    study.set_user_attr("zoo_objectives", [settings.metric, *settings.objectives])
    if not study.trials:
        first = list(settings.enqueue)
        if settings.baseline:
            own = recipe_values(settings.space, settings.baseline_recipe or settings.recipe)
            if own is not None:
                first.insert(0, own)
        for params in first:
            study.enqueue_trial(params, user_attrs={"zoo_enqueued": True}, skip_if_exists=True)
    return study


def _counts(study: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        if not t.user_attrs.get(SURPLUS):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def finished(study: Any) -> int:
    counts = _counts(study)
    return counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)


def run_search(settings: TuneSettings, log: Callable[[str], None] = print) -> Any:
    """Runs trials until the study holds ``n_trials`` finished ones or ``timeout`` passes; returns the study."""
    import optuna

    if settings.runner == "inline" and settings.n_jobs > 1:
        raise ZooError("--n-jobs > 1 runs each trial in its own process; it cannot be combined with --inline")
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(settings)
    deadline = time.monotonic() + settings.timeout if settings.timeout else None
    slots: queue.Queue[int] = queue.Queue()
    for i in range(settings.n_jobs):
        slots.put(i)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            _worker(study, settings, deadline, slots, log)
        except BaseException as err:  # re-raised in the main thread
            errors.append(err)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if settings.n_jobs == 1:
            _worker(study, settings, deadline, slots, log)
        else:
            threads = [threading.Thread(target=worker, daemon=True) for _ in range(settings.n_jobs)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    if errors:
        raise errors[0]
    return study


def _worker(study: Any, settings: TuneSettings, deadline: float | None, slots: queue.Queue[int],
            log: Callable[[str], None]) -> None:
    import optuna

    failures = 0
    poll = max(0.5, min(5.0, settings.heartbeat / 2))
    while deadline is None or time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)
        counts = _counts(study)
        done = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
        if settings.n_trials is not None:
            if done >= settings.n_trials:
                return
            if done + counts.get("RUNNING", 0) >= settings.n_trials and not counts.get("WAITING"):
                time.sleep(poll)  # the last slots are taken: wait until they finish or their worker is found dead
                continue
        outcome: dict[str, Any] = {}
        study.optimize(functools.partial(_objective, study=study, settings=settings, slots=slots, outcome=outcome,
                                         log=log), n_trials=1,
                       catch=(TrialError, _Surplus), gc_after_trial=False, show_progress_bar=False)
        if isinstance(outcome.get("error"), TrialError):
            failures += 1
            log(f"trial {outcome['number']} failed: {outcome['error']}")
            if failures >= settings.max_failures:
                raise ZooError(f"{failures} trials in a row failed; the last: {outcome['error']}")
        elif "error" not in outcome:
            failures = 0


def _objective(trial: Any, study: Any, settings: TuneSettings, slots: queue.Queue[int], outcome: dict[str, Any],
               log: Callable[[str], None]) -> Any:
    import optuna
    from optuna.trial import TrialState

    outcome["number"] = trial.number
    if settings.n_trials is not None:
        alive = sorted(t.number for t in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING))
            if not t.user_attrs.get(SURPLUS))
        if trial.number in alive and alive.index(trial.number) >= settings.n_trials:
            trial.set_user_attr(SURPLUS, True)
            outcome["error"] = _Surplus()
            raise _Surplus
    chosen = settings.space.sample(trial)
    recipe = apply(settings.recipe, settings.space.overrides(chosen))
    base_seed = recipe.get("seed_everything")
    seed = (base_seed if isinstance(base_seed, int) and not isinstance(base_seed, bool) else 0) + trial.number
    recipe["seed_everything"] = seed
    trial.set_user_attr(RECIPE, recipe)
    trial.set_user_attr("seed", seed)
    run_dir = settings.out_dir / f"trial_{trial.number:04d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    trial.set_user_attr("run_dir", str(run_dir))
    slot = slots.get()
    try:
        result = _run_trial(trial, recipe, run_dir, settings, slot)
    except TrialError as err:
        outcome["error"] = err
        raise
    finally:
        slots.put(slot)
    for key, value in result.items():
        if key != "monitor":
            trial.set_user_attr(key, value)
    if result.get("pruned"):
        log(f"trial {trial.number} pruned after {result['steps']} validation(s): {settings.metric}={result['last']}")
        raise optuna.TrialPruned
    if result.get("best") is None:
        outcome["error"] = TrialError(f"trial {trial.number}: {settings.metric} was never logged; "
                                      f"the model logs: see {run_dir}")
        raise outcome["error"]
    values = [result["best"]] + [_objective_value(result, name, trial.number) for name in settings.objectives]
    if not settings.quiet:
        log(f"trial {trial.number}: {settings.metric}={result['best']:.4f} {json.dumps(chosen, default=str)}")
    return values[0] if len(values) == 1 else values


def _objective_value(result: dict[str, Any], name: str, number: int) -> float:
    key = {"params": "params", "latency": "latency_ms"}[name]
    if result.get(key) is None:
        raise TrialError(f"trial {number}: no {name} measured")
    return float(result[key])


def _run_trial(trial: Any, recipe: dict[str, Any], run_dir: Path, settings: TuneSettings, slot: int) -> dict[str, Any]:
    import yaml

    stem = re.sub(r"[^\w.\-]+", "_", settings.study_name) or "trial"
    config = run_dir / f"{stem}.yaml"  # the file name is the run name: CSV logs and W&B group by study
    config.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    result_path = run_dir / "result.json"
    result_path.unlink(missing_ok=True)
    spec = {"storage": settings.storage_url, "study": settings.study_name, "trial_id": optuna_trial_id(trial),
            "monitor": settings.metric, "mode": settings.mode, "result": str(result_path),
            "prune": len(settings.directions) == 1 and settings.pruner[0] != "none",
            "pruner": list(settings.pruner), "objectives": settings.objectives}
    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(run_dir),
            "--trainer.callbacks+=zoo.tune.reporter.TrialReporter"]
    if settings.runner == "inline":
        rc = _run_inline(args, spec, settings)
        log_hint = "the output above"
    else:
        rc = _run_subprocess(args, spec, settings, slot, run_dir / "fit.log")
        log_hint = str(run_dir / "fit.log")
    if rc != 0 or not result_path.exists():
        raise TrialError(f"trial {trial.number}: zoo fit exited with code {rc}; see {log_hint}")
    return json.loads(result_path.read_text(encoding="utf-8"))


def _run_inline(args: list[str], spec: dict[str, Any], settings: TuneSettings) -> int:
    if settings.fit is None:
        raise ZooError("inline trials need the zoo fit entry point")
    old = os.environ.get(ENV)
    os.environ[ENV] = json.dumps(spec)
    try:
        return int(settings.fit(args) or 0)
    except Exception as err:  # a crash of one trial (NaN loss, out of memory) fails that trial, not the search
        raise TrialError(f"zoo fit raised {type(err).__name__}: {err}") from err
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def _run_subprocess(args: list[str], spec: dict[str, Any], settings: TuneSettings, slot: int, log_path: Path) -> int:
    env = dict(os.environ, **{ENV: json.dumps(spec)})
    if settings.n_jobs > 1:  # split the machine between the parallel trials
        threads = max(1, (os.cpu_count() or 1) // settings.n_jobs)
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        devices = _visible_gpus()
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        try:
            return proc.wait()
        except BaseException:
            proc.kill()
            raise


def _visible_gpus() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d for d in listed.split(",") if d.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


def _die_with_parent() -> None:
    # a trial whose search process was killed must not train on as an orphan: its slot is re-queued elsewhere
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
