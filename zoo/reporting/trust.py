"""The trust section of a test report: calibration, conformal coverage, selective prediction (``trust.json``,
``trust.md`` and two PNGs), from the test split's logits and the validation split's (the calibration split)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from torch import Tensor

from zoo.reporting.io import atomic_write_text


def _rows(logits: Tensor, targets: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Token logits ``[N, L, C]`` become one row per labelled token."""
    if kind != "token":
        return logits.float(), targets
    flat_l, flat_t = logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)
    keep = flat_t != -100
    return flat_l[keep], flat_t[keep]


def trust_report(logits: Tensor, targets: Tensor, temperature: Tensor, *, kind: str,
                 val: tuple[Tensor, Tensor] | None, levels: tuple[float, ...], class_names: list[str] | None,
                 target_accuracy: float | None, out_dir: Path) -> tuple[dict[str, Any], list[Path], list[str]]:
    """Returns the summary, the written paths and the console lines. ``kind``: single, multi or token."""
    from zoo.reporting import calibration, conformal, selective

    multi = kind == "multi"
    logits, targets = _rows(logits, targets, kind)
    cal = calibration.calibration_summary(logits, targets, temperature, multi_label=multi)
    summary: dict[str, Any] = {"kind": kind, "n_test": len(targets), "calibration": {
        k: v for k, v in cal.items() if not k.startswith("probs_")}}
    out_dir = Path(out_dir)
    paths = [calibration.plot_reliability(
        {f"before (ECE {cal['ece_before']:.3f})": calibration.reliability_bins(cal["probs_before"], targets, multi),
         f"after temperature scaling (ECE {cal['ece_after']:.3f})":
             calibration.reliability_bins(cal["probs_after"], targets, multi)},
        out_dir / "reliability.png")]
    c = summary["calibration"]
    lines = [f"calibration: ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}, NLL {c['nll_before']:.4f} -> "
             f"{c['nll_after']:.4f} (temperature {', '.join(f'{t:.3f}' for t in c['temperature'][:8])})"]
    if kind == "single":
        probs = cal["probs_after"]
        conf, pred = probs.max(-1)
        correct = pred == targets
        cov, risk, _ = selective.risk_coverage(conf, correct)
        summary["selective"] = {"aurc": selective.aurc(conf, correct), "accuracy": float(correct.float().mean())}
        paths.append(selective.plot_risk_coverage({"calibrated confidence": (cov, risk)},
                                                  out_dir / "risk_coverage.png"))
        lines.append(f"selective prediction: AURC {summary['selective']['aurc']:.4f} (risk_coverage.png)")
        if target_accuracy is not None:
            found = selective.threshold_for_accuracy(conf, correct, target_accuracy)
            summary["selective"]["target"] = found or {"target": target_accuracy}
            summary["selective"]["statement"] = selective.statement(found, target_accuracy)
            lines.append(summary["selective"]["statement"])
        if val is not None and len(val[1]):
            cal_probs = (val[0].float() / temperature).softmax(-1)
            rows = conformal.evaluate(cal_probs, val[1], probs, targets, levels=levels, class_names=class_names)
            summary["conformal"] = rows
            for r in rows:
                if r["method"] == "lac" or r["short"]:
                    lines.append(f"conformal {r['method']} {r['target']:g}: coverage {r['coverage']:.3f}, mean set "
                                 f"size {r['mean_set_size']:.2f}")
                if r["short"]:
                    lines.append(f"warning: conformal {r['method']} coverage {r['coverage']:.3f} is below the "
                                 f"target {r['target']:g} by more than the finite-sample bound {r['bound']:.3f}: the "
                                 "validation split may not be exchangeable with the test split")
    atomic_write_text(out_dir / "trust.json", json.dumps(summary, indent=2, default=_plain))
    atomic_write_text(out_dir / "trust.md", render_markdown(summary))
    return summary, [*paths, out_dir / "trust.json", out_dir / "trust.md"], lines


def _plain(x: Any) -> Any:
    return float(x)


def _f(x: Any, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def render_markdown(summary: dict[str, Any]) -> str:
    c = summary["calibration"]
    out = ["# Trust report", "", "## Calibration (test split)", "",
           f"Temperature: {', '.join(f'{t:.3f}' for t in c['temperature'])} (fitted on the validation split).", "",
           "| | ECE | NLL |", "|---|---|---|",
           f"| before | {_f(c['ece_before'])} | {_f(c['nll_before'])} |",
           f"| after temperature scaling | {_f(c['ece_after'])} | {_f(c['nll_after'])} |", "",
           "![reliability diagram](reliability.png)", ""]
    if "conformal" in summary:
        out += ["## Conformal prediction sets (split conformal, calibrated on the validation split)", "",
                "| score | target | coverage | mean set size | finite-sample bound | short |",
                "|---|---|---|---|---|---|"]
        for r in summary["conformal"]:
            out.append(f"| {r['method']} | {r['target']:g} | {_f(r['coverage'], 3)} | {_f(r['mean_set_size'], 2)} "
                       f"| {_f(r['bound'], 3)} | {'**yes**' if r['short'] else 'no'} |")
        first = summary["conformal"][0]["per_class"]
        if first:
            out += ["", "Coverage per class (first score, per level):", "",
                    "| class | " + " | ".join(f"{r['method']} {r['target']:g}" for r in summary["conformal"]) + " |",
                    "|---|" + "---|" * len(summary["conformal"])]
            for name in first:
                out.append(f"| {name} | " + " | ".join(_f(r["per_class"].get(name), 3) for r in summary["conformal"])
                           + " |")
        out.append("")
    if "selective" in summary:
        s = summary["selective"]
        out += ["## Selective prediction", "", f"AURC: {_f(s['aurc'])} (accuracy at full coverage "
                f"{_f(s['accuracy'])}).", "", "![risk-coverage curve](risk_coverage.png)", ""]
        if "statement" in s:
            out += [s["statement"], ""]
    return "\n".join(out)


__all__ = ["render_markdown", "trust_report"]
