"""``data_report.md`` / ``data_report.json``: the data checks' report (zoo.data.checks) as a person reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.reporting.io import atomic_write_text

#: rows shown per finding in the Markdown report (the JSON holds up to 200)
SHOWN = 10


def _row_text(row: Any) -> str:
    if isinstance(row, dict):
        return ", ".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in row.items())
    if isinstance(row, list):
        return " = ".join(" ".join(map(str, r)) if isinstance(r, list) else str(r) for r in row)
    return str(row)


def render(report: dict[str, Any], title: str = "Data report") -> str:
    lines = [f"# {title}", "", f"Family: {report.get('family')}; checks took {report.get('seconds', 0):.2f} s.", ""]
    figures = report.get("figures", {})
    if figures.get("rows"):
        lines += ["Rows per split: " + ", ".join(f"{s} {n}" for s, n in figures["rows"].items()) + ".", ""]
    settings = report.get("settings") or {}
    if settings.get("dropped"):
        lines += [f"Dropped at set-up (data.dedupe: {settings['dedupe']}, data.exclude_rows: "
                  f"{settings['exclude_rows']}): " + ", ".join(f"{s} {n}" for s, n in settings["dropped"].items())
                  + ".", ""]
    found = report.get("findings", [])
    lines += ["## Findings", ""]
    if not found:
        lines += ["None: no duplicates, near-duplicates or conflicting labels, and no shift between splits beyond "
                  "chance.", ""]
    for f in found:
        lines += [f"### {f['kind']} ({f['severity']})", "", f["message"], ""]
        for row in f["rows"][:SHOWN]:
            lines.append(f"- {_row_text(row)}")
        if f["rows"][:SHOWN]:
            more = len(f["rows"]) - SHOWN
            lines += [f"- ... {more} more (data_report.json lists up to 200)" if more > 0 else "", ""]
        data_rows = f.get("figures", {}).get("data_rows")
        if data_rows:
            lines += [f"Data rows: {', '.join(map(str, data_rows[:20]))}{' ...' if len(data_rows) > 20 else ''}", ""]
    for name in ("labels", "entity_types", "length_chars", "scripts"):
        block = figures.get(name) or {}
        if block:
            lines += [f"## {name.replace('_', ' ')}", "", "| splits | PSI | p-value |", "|---|---|---|"]
            lines += [f"| {pair} | {fig.get('psi')} | {fig.get('p_value')} |" for pair, fig in block.items()]
            lines.append("")
    if figures.get("time_order"):
        lines += ["## time order", "", "```", json.dumps(figures["time_order"], indent=2), "```", ""]
    return "\n".join(line for line in lines if line is not None)


def write_data_report(report: dict[str, Any], out: Path | str) -> list[Path]:
    out = Path(out)
    return [atomic_write_text(out / "data_report.json", json.dumps(report, indent=2, ensure_ascii=False, default=str)),
            atomic_write_text(out / "data_report.md", render(report))]





def write_label_issues(rows: list[dict[str, Any]], path: Path | str) -> Path:
    """``label_issues.csv``: row, split, given_label, suggested_label, score (most suspect first)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["row", "split", "given_label", "suggested_label", "score"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())
__all__ = ["render", "write_data_report", "write_label_issues"]
