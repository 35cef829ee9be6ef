"""What a shipped recipe is stated to reach and how long it trains (recipes/results.yaml), for the line ``zoo fit``
prints at start. Light: YAML only, no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: a recipe stated at more minutes than this is "long": it sets trainer.max_time and zoo fit announces its time
LONG_MINUTES = 15


def results_entry(config: str | Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(entry, file)`` for a recipe path inside a ``recipes/`` folder that has a ``results.yaml``; else None."""
    import yaml

    path = Path(str(config)).resolve()
    for parent in path.parents:
        results = parent / "results.yaml"
        if parent.name == "recipes" and results.is_file():
            try:
                data = yaml.safe_load(results.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError):
                return None
            entry = (data.get("recipes") or {}).get(path.relative_to(parent).as_posix())
            return (entry, data) if isinstance(entry, dict) else None
    return None


def recipe_time_line(config: str | Path, max_time: Any = None) -> str | None:
    """The one line ``zoo fit`` prints for a long recipe, or None."""
    found = results_entry(config)
    if found is None:
        return None
    entry, data = found
    minutes = entry.get("cpu_minutes")
    if not isinstance(minutes, int | float) or minutes <= LONG_MINUTES:
        return None
    where = str(data.get("machine") or "the documented machine").split(" (")[0].split(",")[0]
    overlays = entry.get("overlays") or []
    if overlays:  # measured with overlays (e.g. bf16 autocast): the time holds with them, not without
        where += " with " + " and ".join(f"recipes/overlays/{o}" for o in overlays)
    stop = f"; it stops at trainer.max_time {max_time}" if max_time else ""
    wall = entry.get("wall_minutes")
    took = f"about {minutes:g} CPU-minutes"
    if isinstance(wall, int | float):
        took += f" ({wall:g} min wall when measured)"
    return f"this recipe trains for {took} on {where}{stop} (recipes/results.yaml)"


__all__ = ["LONG_MINUTES", "recipe_time_line", "results_entry"]
