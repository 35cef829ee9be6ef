"""Reading one request and shaping a classifier's answer: the checks every family shares, so a bad request gets
the same 4xx message naming its field whatever the model."""

from __future__ import annotations

from typing import Any

import torch

from zoo.errors import ZooError


class InferenceInputError(ZooError, ValueError):
    """A request the model cannot answer; ``field`` names the offending field, the message what was expected."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.detail, self.status = field, message, status


def request_field(item: Any, name: str, kind: type | tuple[type, ...], what: str, required: bool = True) -> Any:
    """``item[name]`` checked to be of ``kind`` (a bool is no int unless ``kind`` says so); ``what`` is the
    expectation the 4xx message states."""
    if not isinstance(item, dict):
        raise InferenceInputError("body", f"expected a JSON object with {what}, got {type(item).__name__}")
    if name not in item:
        if required:
            raise InferenceInputError(name, f"missing; expected {what}")
        return None
    value = item[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise InferenceInputError(name, f"expected {what}, got {type(value).__name__}")
    return value


def top_k_field(item: Any, default: int | None, limit: int) -> int | None:
    """The request's ``top_k`` (a positive integer, at most ``limit``), else ``default``."""
    k = item.get("top_k", default) if isinstance(item, dict) else default
    if k is None:
        return None
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InferenceInputError("top_k", f"expected a positive integer, got {k!r}")
    return min(k, limit)


def text_field(item: Any, name: str = "text") -> str:
    """The non-empty string of a text request (a bare string is ``{"text": ...}``)."""
    if isinstance(item, str) and name == "text":
        item = {"text": item}
    text = request_field(item, name, str, "a non-empty string")
    if not text.strip():
        raise InferenceInputError(name, "empty; expected a non-empty string")
    return text


def conformal_of(meta: Any, temperature: torch.Tensor) -> dict[str, Any] | None:
    """The export's split-conformal threshold (``conformal``, recorded by ``zoo export`` from ``zoo test``'s
    measurement), or None when the answers' probabilities are not the ones it was measured on: the threshold
    holds for the temperature-scaled probabilities, so a server run with ``--calibration none`` gives no sets."""
    conf = meta.get("conformal")
    if not conf:
        return None
    exported = torch.tensor([float(t) for t in meta.get("temperature") or [1.0]])
    return conf if torch.allclose(temperature.float().flatten(), exported.flatten(), rtol=1e-3) else None


def probability_answers(probs: torch.Tensor, items: list[Any], names: list[str],
                        conformal: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A single-label classifier's answers from its ``[N, C]`` probabilities (also an ensemble's mixture): the
    label, its confidence and the ``top_k`` (default: every) class probabilities of each parsed item. ``items``
    are the parsed requests as dicts (a family's ``parse`` returns one per request); ``item.get("top_k")`` is read
    from each, so a family that takes no ``top_k`` still returns a dict. With ``conformal`` (:func:`conformal_of`)
    each answer also carries its ``prediction_set``: the classes whose LAC score ``1 - p`` is within the threshold
    (the top class always), which holds the true class with probability ``prediction_set_coverage`` on data
    exchangeable with the validation split (the rule of zoo.reporting.conformal.prediction_sets, restated here
    because the inference layer sits below reporting)."""
    if not len(items):
        return []
    # one topk / max over the batch and plain floats after: per row, torch's small-tensor calls cost more than
    # the forward of a small model (docs/serving.md, "Where the time goes")
    ks = [item.get("top_k") or len(names) for item in items]
    top = probs.topk(max(ks), dim=-1)
    values, indices = top.values.tolist(), top.indices.tolist()
    conf, idx = probs.max(-1)
    rows = []
    for k, c, i, vals, idxs in zip(ks, conf.tolist(), idx.tolist(), values, indices):
        rows.append({"label": names[i], "confidence": round(c, 6),
                     "probabilities": {names[j]: round(v, 6) for v, j in zip(vals[:k], idxs[:k])}})
    if conformal:
        floor = 1.0 - float(conformal["threshold"]) - 1e-7
        order = probs.argsort(-1, descending=True).tolist()
        members = (probs >= floor).tolist()
        for row, rank, inside in zip(rows, order, members):
            row["prediction_set"] = [names[j] for n, j in enumerate(rank) if n == 0 or inside[j]]
            row["prediction_set_coverage"] = float(conformal["coverage"])
    return rows


__all__ = ["InferenceInputError", "conformal_of", "probability_answers", "request_field", "text_field", "top_k_field"]
