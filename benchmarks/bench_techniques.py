"""Techniques on the digits image recipe (small CNN): what adversarial training buys and what each technique costs.

1. Accuracy clean and under attack (FGSM and PGD-10, L-inf, eps in pixel units on [0, 1] images) for a model
   trained plainly, with FGM (FGSM-style, linf) and with PGD; same seed, data and epochs.
2. Time per training step of every technique as a ratio to the plain step (median over steps, same batch size).

The BBC text half of the issue's benchmark is not here yet (it needs the text task).

    python -m benchmarks.run techniques          # or: python -m benchmarks.bench_techniques --epochs 6
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import lightning.pytorch as pl
import torch


def _data(batch_size: int) -> Any:
    from zoo.data.image import ImageDataModule

    return ImageDataModule(dataset="digits", image_size=16, batch_size=batch_size, val_fraction=0.1,
                           test_fraction=0.2, seed=0)


def _model() -> Any:
    from zoo.tasks.image import ImageClassifier

    return ImageClassifier(backbone="small_cnn", backbone_kwargs={"width": 16, "dropout": 0.1}, lr=3e-3,
                           scheduler="cosine")


def _trainer(**kw: Any) -> pl.Trainer:
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0)
    defaults.update(kw)
    return pl.Trainer(**defaults)


class StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.times.append(time.perf_counter() - self._start)


def techniques(eps: float) -> dict[str, Any]:
    from zoo.callbacks import FGM, L2SP, PGD, SMART, CutMix, FreeLB, Mixup, RDrop

    return {
        "plain": None,
        "fgm": lambda: FGM(eps=eps, norm="linf"),
        "pgd(3)": lambda: PGD(eps=eps, steps=3, norm="linf"),
        "freelb(3)": lambda: FreeLB(eps=eps, steps=3, norm="linf"),
        "smart": lambda: SMART(eps=eps, norm="linf"),
        "rdrop": lambda: RDrop(alpha=1.0),
        "mixup": lambda: Mixup(alpha=0.4),
        "cutmix": lambda: CutMix(alpha=1.0),
        "l2sp": lambda: L2SP(alpha=0.01),
        "distillation": "teacher",
    }


def robust_eval(model: Any, data: Any, epsilons: list[float]) -> dict[str, float]:
    from zoo.callbacks import AdversarialEvaluation

    out: dict[str, float] = {}
    for label, steps in (("fgsm", 1), ("pgd10", 10)):
        cb = AdversarialEvaluation(eps=epsilons, steps=steps, norm="linf")
        res = _trainer(callbacks=[cb]).test(model, data, verbose=False)[0]
        out["clean_acc"] = round(float(res["test/acc"]), 4)
        for e in epsilons:
            out[f"{label}_acc@{e:g}"] = round(float(res[AdversarialEvaluation.metric_name(e)]), 4)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-eps", type=float, default=0.1)
    parser.add_argument("--eval-eps", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--timing-steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds over all techniques (min of medians)")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args(argv or [])
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    from zoo.callbacks import FGM, PGD, Distillation

    result: dict[str, Any] = {"setup": vars(args) | {"recipe": "digits 16x16, small_cnn width 16"}}

    # 1. robustness: plain vs FGM vs PGD training
    if not args.skip_accuracy:
        rows = {}
        trained: dict[str, Any] = {}
        for label, make in (("plain", None), ("fgm", lambda: FGM(eps=args.train_eps, norm="linf")),
                            ("pgd(3)", lambda: PGD(eps=args.train_eps, steps=3, norm="linf"))):
            pl.seed_everything(0, verbose=False)
            model, data = _model(), _data(args.batch_size)
            start = time.perf_counter()
            _trainer(max_epochs=args.epochs, limit_val_batches=0, callbacks=[make()] if make else []).fit(model, data)
            rows[label] = robust_eval(model, data, args.eval_eps) | {"train_s": round(time.perf_counter() - start, 1)}
            trained[label] = model
            print(label, rows[label], flush=True)
        result["accuracy"] = rows
        teacher = trained["plain"]
    else:
        teacher = None

    # 2. time per step, ratio to the plain step. Rounds interleave the techniques so that load from other
    # processes hits them alike; each technique keeps the minimum over rounds of its median step time.
    timing: dict[str, float] = {}
    for _ in range(args.rounds):
        for label, make in techniques(args.train_eps).items():
            pl.seed_everything(0, verbose=False)
            model, data = _model(), _data(args.batch_size)
            model.configure_from_data(data)
            if make == "teacher":
                if teacher is None:
                    teacher = _model()
                    teacher.configure_from_data(data)
                cb = [Distillation(teacher=teacher)]
            else:
                cb = [make()] if make else []
            timer = StepTimer()
            _trainer(max_steps=args.timing_steps, limit_val_batches=0, callbacks=cb + [timer]).fit(model, data)
            median = statistics.median(timer.times[3:])
            timing[label] = min(timing.get(label, median), median)
    plain = timing["plain"]
    result["step_time_ratio"] = {k: round(v / plain, 2) for k, v in timing.items()}
    result["plain_step_ms"] = round(plain * 1000, 1)
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    if "accuracy" in result:
        rows = result["accuracy"]
        keys = [k for k in next(iter(rows.values())) if k != "train_s"] + ["train_s"]
        print("\ntraining  | " + " | ".join(keys))
        for label, row in rows.items():
            print(f"{label:9} | " + " | ".join(str(row[k]) for k in keys))
    print(f"\nplain step: {result['plain_step_ms']} ms; time per step as a ratio to plain:")
    for k, v in result["step_time_ratio"].items():
        print(f"  {k:13} {v}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
