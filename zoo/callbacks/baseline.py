"""A baseline every run must beat: at ``zoo test``, fit the data's cheap reference model
(:mod:`zoo.baselines.references`) on the same train split, score it on the same test split, and put both side by
side in ``baseline.json`` / ``baseline.md``; one console line when the model does not beat it by ``margin``."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import lightning.pytorch as pl

from zoo.callbacks.run_report import run_dir
from zoo.contract import trait
from zoo.errors import ConfigError
from zoo.registry import CALLBACKS


def compare(model_metrics: dict[str, float], reference: dict[str, Any], headline: str, margin: float,
            unknown_rate: float | None = None, hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """Side-by-side table and verdict: ``beats`` is whether the model's ``headline`` exceeds the reference's by
    at least ``margin`` (absolute); ``causes`` lists what usually explains a model that does not."""
    ref = reference["metrics"]
    names = [k for k in ref if k in model_metrics]
    if headline not in names:
        headline = names[0] if names else headline
    rows = [{"metric": k, "model": model_metrics[k], "reference": ref[k], "difference": model_metrics[k] - ref[k]}
            for k in names]
    out: dict[str, Any] = {"reference": reference["name"], "seconds": reference.get("seconds"), "headline": headline,
                           "margin": margin, "rows": rows, "unknown_token_rate": unknown_rate}
    if reference.get("caps"):
        out["caps"] = reference["caps"]
    if headline not in model_metrics or headline not in ref:
        out["beats"] = None
        return out
    out["beats"] = model_metrics[headline] >= ref[headline] + margin
    if not out["beats"]:
        causes = ["too few epochs", f"learning rate (lr={hparams.get('lr')})" if hparams and "lr" in hparams
                  else "learning rate"]
        if unknown_rate is not None:
            causes.append(f"an encoder whose vocabulary does not cover the text ({100 * unknown_rate:.1f} % of "
                          "tokens are unknown)" if unknown_rate > 0.01 else
                          f"not the encoder's vocabulary ({100 * unknown_rate:.2f} % unknown tokens)")
        out["causes"] = causes
    return out


def verdict_line(result: dict[str, Any]) -> str:
    h = result["headline"]
    row = next((r for r in result["rows"] if r["metric"] == h), None)
    if row is None or result["beats"] is None:
        return f"baseline ({result['reference']}): no common metric to compare"
    head = (f"test/{h} {row['model']:.4f} vs {row['reference']:.4f} for the baseline ({result['reference']}, "
            f"{result['seconds']} s)")
    if result["beats"]:
        return f"{head}: the model beats it by {row['difference']:+.4f}"
    return (f"warning: the model does not beat the baseline by {result['margin']:g}: {head}; likely causes: "
            f"{', '.join(result['causes'])}")


def caps_line(caps: dict[str, Any]) -> str:
    """What the reference was bounded to, so that it stays a matter of seconds on long texts."""
    return (f"Reference caps: at most {caps['train_texts']:,} training texts and "
            f"{caps.get('training_characters', 0):,} characters of training text ({caps['train_texts_used']:,} texts "
            f"used), the first {caps['characters_per_text']:,} characters of each text ({caps['texts_cut']:,} cut), "
            f"{caps['features_per_analyzer']:,} word and {caps['features_per_analyzer']:,} character n-gram features, "
            f"{caps.get('solver_iterations', '?')} solver iterations.")


def render_markdown(result: dict[str, Any]) -> str:
    lines = ["# Baseline comparison", "", f"Reference: {result['reference']} (fitted in {result['seconds']} s on the "
             "same train split, scored on the same test split).", "",
             "| metric | model | reference | difference |", "|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['metric']} | {r['model']:.4f} | {r['reference']:.4f} | {r['difference']:+.4f} |")
    lines += ["", verdict_line(result), ""]
    if result.get("caps"):
        lines += [caps_line(result["caps"]), ""]
    if result.get("unknown_token_rate") is not None:
        lines += ["Unknown-token rate of the encoder on the training split: "
                  f"{100 * result['unknown_token_rate']:.2f} %.", ""]
    if result.get("note"):
        lines += [result["note"], ""]
    return "\n".join(lines)


@CALLBACKS.register("baseline", summary="at test: fit a cheap reference (TF-IDF+LR, pixel LR, most popular, most "
                                        "frequent tag) and compare it with the model")
class BaselineComparison(pl.Callback):
    """Args:
        margin: absolute amount of the headline metric the model must beat the reference by.
        enabled: false skips the reference (large data where even a linear model takes too long).

    A model whose class sets ``is_baseline = True`` (``most_popular``) is the reference: it is not compared with
    itself, one line says so.
    """

    def __init__(self, margin: float = 0.01, enabled: bool = True) -> None:
        if margin < 0:
            raise ConfigError(f"baseline margin must be >= 0, got {margin}")
        self.margin, self.enabled = margin, enabled
        self.result: dict[str, Any] | None = None

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)  # a collective under DDP: every rank
        if not self.enabled or not trainer.is_global_zero or trainer.datamodule is None or trainer.sanity_checking:
            return
        if getattr(pl_module, "is_baseline", False):  # most_popular: the reference is the model itself
            print(f"zoo: baseline: skipped, {type(pl_module).__name__} is itself the baseline it would be "
                  "compared with",
                  file=sys.stderr)
            return
        from zoo.baselines.references import NoReference, reference_for, unknown_token_rate
        from zoo.reporting.io import atomic_write_text

        headline = str(trait(pl_module, "monitor")).split("/", 1)[-1]
        ks = tuple(sorted({10, 20, *(int(k) for k in re.findall(r"@(\d+)", headline))}))
        model_metrics = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items()
                         if k.startswith("test/") and getattr(v, "numel", lambda: 1)() == 1}
        try:
            reference = reference_for(trainer.datamodule, ks=ks)
        except NoReference as err:
            print(f"zoo: baseline: none for this data ({err})", file=sys.stderr)
            return
        self.result = compare(model_metrics, reference, headline, self.margin, unknown_token_rate(trainer.datamodule),
                              dict(getattr(pl_module, "hparams", {}) or {}))
        if trainer.limit_test_batches not in (None, 1.0):
            self.result["note"] = (f"The model was scored on limit_test_batches={trainer.limit_test_batches}, the "
                                   "reference on the whole test split.")
        atomic_write_text(out / "baseline.json", json.dumps(self.result, indent=2))
        atomic_write_text(out / "baseline.md", render_markdown(self.result))
        print(f"zoo: {verdict_line(self.result)}", file=sys.stderr)


__all__ = ["BaselineComparison", "compare", "render_markdown", "verdict_line"]
