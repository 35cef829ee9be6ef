"""What a search leaves in its directory, all rebuilt from the study's storage (so ``zoo tune --report DIR``
works on any machine that reaches the storage):

* ``best.yaml``: the best trial's full recipe (its values and seed), runnable with ``zoo fit --config``;
* ``trials.csv``: one row per trial (number, state, objective values, parameters, seed, run directory);
* ``pareto.csv`` when there are several objectives: the trials on the Pareto front;
* ``plots/*.png``: optimisation history, parameter importances, parallel coordinates, intermediate values
  (the pruned curves) and, with several objectives, the Pareto front.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.reporting.io import atomic_write_text
from zoo.tune.study import RECIPE, SURPLUS

SETTINGS_FILE = "tune.json"


def objective_names(study: Any) -> list[str]:
    names = study.user_attrs.get("zoo_objectives") or []
    return names if len(names) == len(study.directions) else [f"value_{i}" for i in range(len(study.directions))]


def best_trial(study: Any) -> Any | None:
    """The best finished trial: the single objective's best, or the Pareto trial with the best first objective."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    if len(study.directions) == 1:
        return study.best_trial
    front = study.best_trials
    sign = 1 if study.directions[0].name == "MAXIMIZE" else -1
    return max(front, key=lambda t: sign * t.values[0])


def write_outputs(study: Any, out_dir: Path, plots: bool = True) -> dict[str, Any]:
    """Writes best.yaml, trials.csv (pareto.csv) and the plots; returns a summary for the command's output."""
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    names = objective_names(study)
    rows = _rows(study, names)
    _write_csv(out_dir / "trials.csv", rows)
    summary: dict[str, Any] = {"trials": len(rows), "finished": sum(r["state"] in ("COMPLETE", "PRUNED") for r in rows)}
    best = best_trial(study)
    if best is not None:
        recipe = best.user_attrs.get(RECIPE)
        if recipe is None:
            raise ZooError(f"trial {best.number} of study {study.study_name!r} has no recipe stored")
        header = (f"# zoo tune: best trial {best.number} of study {study.study_name!r}: "
                  + ", ".join(f"{n}={v:.6g}" for n, v in zip(names, best.values, strict=True)) + "\n")
        _atomic_write(out_dir / "best.yaml", header + yaml.safe_dump(recipe, sort_keys=False))
        summary.update(best_number=best.number, best_values=dict(zip(names, best.values, strict=True)),
                       best_params=best.params)
    if len(study.directions) > 1:
        front = {t.number for t in study.best_trials}
        _write_csv(out_dir / "pareto.csv", [r for r in rows if r["number"] in front])
        summary["pareto"] = sorted(front)
    if plots:
        summary["plots"] = write_plots(study, out_dir / "plots", names)
    return summary


def _rows(study: Any, names: list[str]) -> list[dict[str, Any]]:
    keys = sorted({k for t in study.trials for k in t.params})
    rows = []
    for t in study.trials:
        if t.user_attrs.get(SURPLUS):
            continue
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        for i, name in enumerate(names):
            row[name] = t.values[i] if t.values else (t.user_attrs.get("last") if i == 0 else None)
        for k in keys:
            row[k] = t.params.get(k)
        duration = t.duration.total_seconds() if t.duration else None
        row.update(seconds=round(duration, 2) if duration else None, seed=t.user_attrs.get("seed"),
                   steps=t.user_attrs.get("steps"), retried_from=t.system_attrs.get("failed_trial"),
                   run_dir=t.user_attrs.get("run_dir"))
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["number", "state"])
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(path, buffer.getvalue())


def _atomic_write(path: Path, text: str) -> None:
    # Several worker processes of one study write these files; each needs its own temporary name.
    atomic_write_text(path, text)


def write_plots(study: Any, plot_dir: Path, names: list[str]) -> dict[str, str]:
    """Optuna's matplotlib plots as PNG; a plot that needs more trials than there are is listed with the reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    plot_dir.mkdir(parents=True, exist_ok=True)
    multi = len(study.directions) > 1
    target = (lambda t: t.values[0]) if multi else None
    first = {"target": target, "target_name": names[0]} if multi else {"target_name": names[0]}
    plots = {"history": lambda: vis.plot_optimization_history(study, **first),
             "importances": lambda: vis.plot_param_importances(study, **first),
             "parallel_coordinates": lambda: vis.plot_parallel_coordinate(study, **first)}
    if multi:
        plots["pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=names)
    else:
        plots["intermediate_values"] = lambda: vis.plot_intermediate_values(study)
    done: dict[str, str] = {}
    import warnings

    for name, draw in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(plot_dir / f"{name}.png", dpi=80)
            plt.close(fig)
            done[name] = str(plot_dir / f"{name}.png")
        except Exception as err:  # optuna refuses e.g. importances with one finished trial
            done[name] = f"not drawn: {err}"
            plt.close("all")
    return done


def save_settings(out_dir: Path, payload: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / SETTINGS_FILE, json.dumps(payload, indent=1))


def load_settings(out_dir: Path) -> dict[str, Any]:
    path = out_dir / SETTINGS_FILE
    if not path.exists():
        raise ZooError(f"--report {out_dir}: no {SETTINGS_FILE} there (not a zoo tune directory); "
                       "give --storage and --study-name instead")
    return json.loads(path.read_text(encoding="utf-8"))
