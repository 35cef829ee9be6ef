"""Argument checks shared by the techniques: each error names the argument and the values it accepts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zoo.contract import trait
from zoo.errors import ConfigError

NORMS = ("l2", "linf")
Bounds = tuple[float, float] | None


class TechniqueConfigError(ConfigError):
    """A technique argument out of range; the message names the argument and what is accepted."""


def check_positive(owner: str, name: str, value: float, what: str) -> None:
    if not isinstance(value, int | float) or not value > 0:
        raise TechniqueConfigError(f"{owner}: {name} must be > 0 ({what}); got {value!r}")


def check_non_negative(owner: str, name: str, value: float, what: str) -> None:
    if not isinstance(value, int | float) or value < 0:
        raise TechniqueConfigError(f"{owner}: {name} must be >= 0 ({what}); got {value!r}")


def check_steps(owner: str, steps: Any, what: str = "number of ascent steps") -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise TechniqueConfigError(f"{owner}: steps must be an integer >= 1 ({what}); got {steps!r}")


def check_norm(owner: str, norm: str) -> None:
    if norm not in NORMS:
        raise TechniqueConfigError(f"{owner}: norm must be one of {', '.join(NORMS)}; got {norm!r}")


def parse_clamp(owner: str, clamp: Any) -> Bounds | str:
    """``"auto"`` (the task's ``embedding_bounds``, e.g. [0, 1] for pixels), ``"none"``/None, or ``[lo, hi]``."""
    if clamp is None or clamp == "none":
        return None
    if clamp == "auto":
        return "auto"
    if isinstance(clamp, Sequence) and not isinstance(clamp, str) and len(clamp) == 2:
        lo, hi = float(clamp[0]), float(clamp[1])
        if lo < hi:
            return (lo, hi)
    raise TechniqueConfigError(f"{owner}: clamp must be 'auto', 'none' or [low, high] with low < high; got {clamp!r}")


def resolve_bounds(clamp: Bounds | str, module: Any) -> Bounds:
    """The clamp range for ``module``: ``auto`` reads the task's ``embedding_bounds`` trait."""
    if clamp == "auto":
        bounds = trait(module, "embedding_bounds")
        return tuple(bounds) if bounds is not None else None  # type: ignore[return-value]
    return clamp  # type: ignore[return-value]


__all__ = ["NORMS", "Bounds", "TechniqueConfigError", "check_non_negative", "check_norm", "check_positive",
           "check_steps", "parse_clamp", "resolve_bounds"]
