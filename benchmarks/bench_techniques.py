"""Training techniques on an image and a text recipe: what adversarial training buys and what each technique costs.

For each half (``--task image``, ``--task text`` or ``--task all``, the default):

1. Accuracy clean and under attack (FGSM and PGD-10 on what the task's ``embed`` returns) for a model trained
   plainly, with FGM and with PGD (3 steps); same seed, data and epochs.
2. Time per training step of every technique as a ratio to the plain step (same batch size; the techniques are
   interleaved over rounds so that load from other processes hits them alike, and each keeps the minimum over
   rounds of its median step time). A technique that does not apply to the task is listed as ``n/a: <reason>``,
   the reason being the ``TechniqueNotApplicableError`` the technique itself raises.

Image half: digits upsampled to 16x16, ``small_cnn`` width 16; attacks are L-inf in pixel units on [0, 1] images.

Text half: the BBC News LoRA recipe (``recipes/text/bbc_news_lora.yaml``: MiniLM + LoRA r 8 on query/value, mean
pooling, bf16-mixed, lr 1e-3 with linear warm-up, max_length 128, batch 32), model and data built in-process from
the recipe's ``init_args``. The adversary perturbs the token embeddings (the word-embedding lookup, before the
position embeddings and the embedding LayerNorm) inside a per-example L2 ball, the usual FGM threat model for text
(Miyato et al. 2017): L-inf sign steps would move every one of the 128 x 384 coordinates by eps at once, far from
any sentence. Scale: a MiniLM word embedding has an L2 norm of about 1.1 (median over the BBC test tokens), so
one example of 128 tokens has a norm of about 13. Measured on the plain model after one epoch (clean 0.91):
L2 eps 0.25 / 0.5 / 1 / 2 leave FGSM accuracy 0.72 / 0.48 / 0.21 / 0.07, and PGD-10 at eps 1 already leaves 1%
(0 at 2). So the evaluation eps are 0.25 and 0.5, where the plain model is clearly hurt but not at zero (eps 0.5
is less than half of one token's norm spread over the whole text), and the training adversaries use eps 0.5.
The evaluation keeps the full test split (445 texts); ``--text-max-train`` trains on a
deterministic subset of the training split to fit a time budget.

    python -m benchmarks.run techniques       # both halves, defaults; benchmarks/results/techniques.json
    python -m benchmarks.bench_techniques --task image --epochs 6
    python -m benchmarks.bench_techniques --task text --save techniques_text      # the BBC half alone, saved
    python -m benchmarks.bench_techniques --task text --text-max-train 64 --text-max-test 64 --text-epochs 1 \\
        --text-timing-steps 3 --text-rounds 1                  # smoke run, a few minutes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
TEXT_RECIPE = ROOT / "recipes" / "text" / "bbc_news_lora.yaml"


# -- shared -------------------------------------------------------------------------------------------------
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


def robust_eval(model: Any, data: Any, epsilons: list[float], norm: str = "linf",
                **trainer_kw: Any) -> dict[str, float]:
    from zoo.techniques import AdversarialEvaluation

    out: dict[str, float] = {}
    for label, steps in (("fgsm", 1), ("pgd10", 10)):
        cb = AdversarialEvaluation(eps=epsilons, steps=steps, norm=norm)
        res = _trainer(callbacks=[cb], **trainer_kw).test(model, data, verbose=False)[0]
        out["clean_acc"] = round(float(res["test/acc"]), 4)
        for e in epsilons:
            out[f"{label}_acc@{e:g}"] = round(float(res[AdversarialEvaluation.metric_name(e)]), 4)
    return out


def _adversarial_training(make_pair: Callable[[], tuple[Any, Any]], train_eps: float, norm: str, seed: int,
                          eval_eps: list[float], **trainer_kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plain, FGM and PGD(3) training with the same seed, data and epochs; clean / FGSM / PGD-10 accuracy."""
    from zoo.techniques import FGM, PGD

    fit_kw = {k: v for k, v in trainer_kw.items() if k != "max_epochs"}
    rows: dict[str, Any] = {}
    trained: dict[str, Any] = {}
    for label, make in (("plain", None), ("fgm", lambda: FGM(eps=train_eps, norm=norm)),
                        ("pgd(3)", lambda: PGD(eps=train_eps, steps=3, norm=norm))):
        pl.seed_everything(seed, verbose=False)
        model, data = make_pair()
        start = time.perf_counter()
        _trainer(limit_val_batches=0, callbacks=[make()] if make else [], **trainer_kw).fit(model, data)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        rows[label] = robust_eval(model, data, eval_eps, norm, **fit_kw) | {"train_s": round(train_s, 1)}
        rows[label]["eval_s"] = round(time.perf_counter() - start, 1)
        trained[label] = model
        print(label, rows[label], flush=True)
    return rows, trained


def _time_techniques(makers: dict[str, Any], make_pair: Callable[[], tuple[Any, Any]],
                     teacher: Callable[[Any], Any], steps: int, rounds: int, skip: int,
                     **trainer_kw: Any) -> tuple[dict[str, float], dict[str, str]]:
    """Median step time per technique (min over interleaved rounds) and the techniques that do not apply."""
    from zoo.contract import TechniqueNotApplicableError
    from zoo.techniques import Distillation

    timing: dict[str, float] = {}
    not_applicable: dict[str, str] = {}
    for _ in range(rounds):
        for label, make in makers.items():
            if label in not_applicable:
                continue
            pl.seed_everything(0, verbose=False)
            model, data = make_pair()
            model.bind_data(data)
            if make == "teacher":
                cb = [Distillation(teacher=teacher(data))]
            else:
                cb = [make()] if make else []
            try:
                for c in cb:
                    c.check_compatible(model)
            except TechniqueNotApplicableError as err:
                not_applicable[label] = f"n/a: {err}"
                print(label, not_applicable[label], flush=True)
                continue
            timer = StepTimer()
            _trainer(max_steps=steps, limit_val_batches=0, callbacks=cb + [timer], **trainer_kw).fit(model, data)
            # the first steps warm up allocator and kernels; keep at least one
            median = statistics.median(timer.times[min(skip, len(timer.times) - 1):])
            timing[label] = min(timing.get(label, median), median)
    return timing, not_applicable


def _ratios(timing: dict[str, float], not_applicable: dict[str, str], order: list[str]) -> dict[str, Any]:
    plain = timing["plain"]
    return {k: (round(timing[k] / plain, 2) if k in timing else not_applicable[k]) for k in order}


# -- image half: digits ------------------------------------------------------------------------------------
def _data(batch_size: int) -> Any:
    from zoo.data.image import ImageDataModule

    return ImageDataModule(dataset="digits", image_size=16, batch_size=batch_size, val_fraction=0.1,
                           test_fraction=0.2, seed=0)


def _model() -> Any:
    from zoo.tasks.image import ImageClassifier

    return ImageClassifier(backbone="small_cnn", backbone_kwargs={"width": 16, "dropout": 0.1}, lr=3e-3,
                           scheduler="cosine")


def techniques(eps: float, norm: str = "linf") -> dict[str, Any]:
    """Every technique at the benchmark's settings. Adversaries use ``norm`` (L-inf for pixels, L2 per example
    for token embeddings); mixup mixes whatever ``embed`` returns (token embeddings for text); cutmix needs pixels
    and is reported as n/a, with the reason it raises, elsewhere; the distillation teacher is the plain-trained
    model of the accuracy part (same size as the student)."""
    from zoo.techniques import FGM, L2SP, PGD, SMART, CutMix, FreeLB, Mixup, RDrop

    return {
        "plain": None,
        "fgm": lambda: FGM(eps=eps, norm=norm),
        "pgd(3)": lambda: PGD(eps=eps, steps=3, norm=norm),
        "freelb(3)": lambda: FreeLB(eps=eps, steps=3, norm=norm),
        "smart": lambda: SMART(eps=eps, norm=norm),
        "rdrop": lambda: RDrop(alpha=1.0),
        "mixup": lambda: Mixup(alpha=0.4),
        "cutmix": lambda: CutMix(alpha=1.0),
        "l2sp": lambda: L2SP(alpha=0.01),
        "distillation": "teacher",
    }


def image_half(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"setup": {k: v for k, v in vars(args).items() if not k.startswith("text_")}
                              | {"recipe": "digits 16x16, small_cnn width 16"}}
    teacher_model = None
    if not args.skip_accuracy:
        rows, trained = _adversarial_training(lambda: (_model(), _data(args.batch_size)), args.train_eps, "linf", 0,
                                              args.eval_eps, max_epochs=args.epochs)
        result["accuracy"] = rows
        teacher_model = trained["plain"]

    def teacher(data: Any) -> Any:
        nonlocal teacher_model
        if teacher_model is None:
            teacher_model = _model()
            teacher_model.bind_data(data)
        return teacher_model

    if args.skip_timing:
        return result
    makers = techniques(args.train_eps)
    timing, na = _time_techniques(makers, lambda: (_model(), _data(args.batch_size)), teacher, args.timing_steps,
                                  args.rounds, skip=3)
    result["step_time_ratio"] = _ratios(timing, na, list(makers))
    result["plain_step_ms"] = round(timing["plain"] * 1000, 1)
    return result


# -- text half: BBC News, MiniLM + LoRA ----------------------------------------------------------------------
def text_recipe() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(TEXT_RECIPE.read_text())


def text_data(recipe: dict[str, Any], batch_size: int | None = None, max_train: int | None = None,
              max_test: int | None = None, seed: int = 0) -> Any:
    """The recipe's datamodule; ``max_train`` / ``max_test`` keep a seeded random subset of that split only
    (the recipe's ``max_samples`` would subset the whole corpus before the split, shrinking the test split)."""
    import numpy as np

    from zoo.data.text import TextDataModule, TokenizedSet

    kw = dict(recipe["data"]["init_args"])
    if batch_size:
        kw["batch_size"] = batch_size
    data = TextDataModule(**kw)
    data.setup("fit")  # later setup calls keep these splits
    for split, n in (("train", max_train), ("test", max_test)):
        rows = data.splits[split].rows
        if n is not None and n < len(rows):
            keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:n])
            data.splits[split] = TokenizedSet([rows[i] for i in keep])
    return data


def text_model(recipe: dict[str, Any]) -> Any:
    from zoo.tasks.text import TextClassifier

    return TextClassifier(**recipe["model"]["init_args"])


def text_techniques(eps: float) -> dict[str, Any]:
    return techniques(eps, norm="l2")


def text_half(args: argparse.Namespace) -> dict[str, Any]:
    recipe = text_recipe()
    precision = recipe["trainer"].get("precision", "32-true")
    seed = int(recipe.get("seed_everything", 0))
    bs = args.text_batch_size or recipe["data"]["init_args"].get("batch_size")
    result: dict[str, Any] = {"setup": {k: v for k, v in vars(args).items() if k.startswith("text_")}
                              | {"recipe": str(TEXT_RECIPE.relative_to(ROOT)), "precision": precision,
                                 "batch_size": bs, "seed": seed, "norm": "l2 per example"}}

    def pair(batch_size: int = bs) -> tuple[Any, Any]:
        return text_model(recipe), text_data(recipe, batch_size, args.text_max_train, args.text_max_test)

    probe = pair()[1]
    result["setup"]["train_samples"] = len(probe.splits["train"])
    result["setup"]["test_samples"] = len(probe.splits["test"])
    teacher_model = None
    if not args.skip_accuracy:
        rows, trained = _adversarial_training(pair, args.text_train_eps, "l2", seed, args.text_eval_eps,
                                              max_epochs=args.text_epochs, precision=precision)
        result["accuracy"] = rows
        teacher_model = trained["plain"]
        result["loadavg_after_accuracy"] = os.getloadavg()

    def teacher(data: Any) -> Any:
        nonlocal teacher_model
        if teacher_model is None:
            teacher_model = text_model(recipe)
            teacher_model.bind_data(data)
        return teacher_model

    if args.skip_timing:
        return result
    makers = text_techniques(args.text_train_eps)
    timing_bs = args.text_timing_batch_size or bs
    result["setup"]["timing_batch_size"] = timing_bs
    timing, na = _time_techniques(makers, lambda: pair(timing_bs), teacher, args.text_timing_steps, args.text_rounds,
                                  skip=min(2, args.text_timing_steps - 1), precision=precision)
    result["step_time_ratio"] = _ratios(timing, na, list(makers))
    result["plain_step_ms"] = round(timing["plain"] * 1000, 1)
    return result


# -- entry point -------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("image", "text", "all"), default="all")
    parser.add_argument("--skip-accuracy", action="store_true", help="timing only (both halves)")
    parser.add_argument("--skip-timing", action="store_true", help="accuracy only (both halves)")
    parser.add_argument("--save", metavar="NAME", help="also write benchmarks/results/NAME.json (machine, load)")
    image = parser.add_argument_group("image half (digits)")
    image.add_argument("--epochs", type=int, default=8)
    image.add_argument("--batch-size", type=int, default=64)
    image.add_argument("--train-eps", type=float, default=0.1)
    image.add_argument("--eval-eps", type=float, nargs="+", default=[0.05, 0.1])
    image.add_argument("--timing-steps", type=int, default=25)
    image.add_argument("--rounds", type=int, default=3, help="timing rounds over all techniques (min of medians)")
    text = parser.add_argument_group("text half (BBC News LoRA recipe)")
    text.add_argument("--text-epochs", type=int, default=1)
    text.add_argument("--text-max-train", type=int, default=None, help="train on a subset of this many texts")
    text.add_argument("--text-max-test", type=int, default=None, help="evaluate on a subset (smoke runs only)")
    text.add_argument("--text-batch-size", type=int, default=None, help="default: the recipe's (32)")
    text.add_argument("--text-train-eps", type=float, default=0.5, help="L2 per example, FGM / PGD training")
    text.add_argument("--text-eval-eps", type=float, nargs="+", default=[0.25, 0.5],
                      help="L2 per example attacks")
    text.add_argument("--text-timing-steps", type=int, default=6)
    text.add_argument("--text-timing-batch-size", type=int, default=None, help="default: as for training")
    text.add_argument("--text-rounds", type=int, default=2)
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv or [])
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    start, load_start = time.time(), os.getloadavg()
    result: dict[str, Any] = {}
    if args.task in ("image", "all"):
        result["image"] = image_half(args)
        _print("image (digits)", result["image"])
    if args.task in ("text", "all"):
        result["text"] = text_half(args)
        _print("text (BBC News, MiniLM + LoRA)", result["text"])
    result["loadavg"] = {"start": load_start, "end": os.getloadavg()}
    if args.save:
        _save(args.save, argv or [], time.time() - start, result)
    return result


def _save(name: str, argv: list[str], seconds: float, result: dict[str, Any]) -> Path:
    from benchmarks.run import HERE, machine

    load = result["loadavg"]
    record = {"benchmark": "techniques", "args": list(argv), "seconds": round(seconds, 1), "machine": machine(),
              "date": time.strftime("%Y-%m-%d %H:%M"),
              "load_note": "shared 2-core CPU; load average (1, 5, 15 min) "
                           f"{tuple(round(x, 2) for x in load['start'])} at start, "
                           f"{tuple(round(x, 2) for x in load['end'])} at end",
              "result": result}
    out = HERE / "results" / f"{name}.json"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(out)
    return out


def _print(title: str, result: dict[str, Any]) -> None:
    print(f"\n== {title}")
    if "accuracy" in result:
        rows = result["accuracy"]
        keys = [k for k in next(iter(rows.values())) if k not in ("train_s", "eval_s")] + ["train_s", "eval_s"]
        print("training  | " + " | ".join(keys))
        for label, row in rows.items():
            print(f"{label:9} | " + " | ".join(str(row.get(k, "")) for k in keys))
    if "step_time_ratio" not in result:
        return
    print(f"\nplain step: {result['plain_step_ms']} ms; time per step as a ratio to plain:")
    for k, v in result["step_time_ratio"].items():
        print(f"  {k:13} {v}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
