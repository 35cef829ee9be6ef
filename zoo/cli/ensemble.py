"""``zoo ensemble``: combine trained classifiers into one, weights fitted on the validation split.

    zoo ensemble --runs runs/bbc_news_lora/version_0 runs/bbc_news_tfidf/version_0 --out runs/bbc_ensemble
    zoo ensemble --load runs/bbc_ensemble --predict texts.csv > predictions.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo ensemble", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--runs", nargs="+", metavar="RUN",
                   help="run directories of `zoo fit` (runs/<recipe>/version_N)")
    p.add_argument("--out", help="directory for ensemble.json, test_metrics.json and test predictions")
    p.add_argument("--checkpoint", default="best.ckpt", help="checkpoint file name inside each run (best.ckpt)")
    p.add_argument("--load", metavar="DIR", help="an ensemble directory written by --out, to predict with")
    p.add_argument("--predict", metavar="FILE", help="with --load: a table of texts; default: the test split")
    return p


def _write_rows(out, ids, probs, names) -> None:
    writer = csv.writer(out)
    writer.writerow(["id", "label", "confidence"])
    conf, idx = probs.max(-1)
    for i, k, c in zip(ids, idx.tolist(), conf.tolist()):
        writer.writerow([i, names[k], round(float(c), 6)])


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from zoo.tasks.ensemble import Ensemble, EnsembleError, scores

    if args.load:
        ens = Ensemble.load(args.load)
        ids, probs, _ = ens.predict("predict" if args.predict else "test", args.predict)
        _write_rows(sys.stdout, ids, probs, ens.class_names)
        return 0
    if not args.runs or not args.out:
        raise EnsembleError("give --runs RUN_A RUN_B ... and --out DIR (or --load DIR to predict)")
    start = time.perf_counter()
    ens = Ensemble.from_runs(args.runs, args.checkpoint)
    ens.fit()
    outs = ens.outputs("test")
    probs, labels = ens.combine(outs), outs[0].labels
    report: dict = {"members": [], "validation": ens.validation, "fallback": ens.fallback, "seconds": 0.0}
    n = len(ens.class_names)
    if labels is not None:
        report["ensemble"] = scores(probs, labels, n)
        for m, o in zip(ens.members, outs):
            report["members"].append({"run": m.run, "weight": round(m.weight, 4),
                                      "temperature": round(m.temperature, 4), **scores(o.logits, labels, n)})
    report["seconds"] = round(time.perf_counter() - start, 2)
    path = ens.save(args.out)
    from pathlib import Path

    from zoo.reporting.io import atomic_write_text

    atomic_write_text(Path(args.out) / "test_metrics.json", json.dumps(report, indent=2))
    buf = io.StringIO()
    _write_rows(buf, outs[0].ids, probs, ens.class_names)
    atomic_write_text(Path(args.out) / "predictions_test.csv", buf.getvalue())
    print(json.dumps(report, indent=2))
    print(f"zoo: wrote {path}: {_summary(ens)}", file=sys.stderr)
    return 0


def _summary(ens) -> str:
    """What the ensemble is, on one line: the fallback and why, or the weights and what they won by."""
    from zoo.tasks.ensemble import HEADLINE

    val = ens.validation or {}
    if ens.fallback:
        return f"fell back to one member, weight 1.0: {ens.fallback['reason']}"
    weights = " / ".join(f"{m.weight:.2f}" for m in ens.members)
    best = max((s[HEADLINE] for s in val.get("members", [])), default=float("nan"))
    return (f"weights {weights}; validation {HEADLINE} {val.get('ensemble', {}).get(HEADLINE, float('nan')):.4f} "
            f"above the best member's {best:.4f}")
