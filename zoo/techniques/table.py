"""The settings table: which technique applies to which task, decided by the techniques' own checks.

``applies(technique, module)`` is what ``docs/techniques.md`` tabulates and what the generic test iterates;
a technique that does not apply raises :class:`~zoo.contract.TechniqueNotApplicableError` at setup.
"""

from __future__ import annotations

from typing import Any

from zoo.contract import TechniqueNotApplicableError
from zoo.registry import CALLBACKS


def technique_names() -> list[str]:
    """Registered training techniques (callbacks tagged ``technique``)."""
    return CALLBACKS.list(tag="technique")


def example(name: str, **overrides: Any) -> Any:
    """A technique built with its registered example arguments (small, test-sized settings)."""
    entry = CALLBACKS.entry(name)
    return entry.fn(**{**entry.meta.get("example", {}), **overrides})


def applies(technique: Any, module: Any) -> tuple[bool, str]:
    """``(True, "")`` when ``technique`` can train ``module``, else ``(False, reason)``."""
    try:
        technique.check_compatible(module)
    except TechniqueNotApplicableError as err:
        return False, str(err)
    return True, ""


__all__ = ["applies", "example", "technique_names"]
