"""Ensembles of trained classifiers: calibrated probabilities of several runs on the same label set, combined with
weights fitted on the validation split.

Members may read different inputs (MiniLM token ids, hashed n-grams, TF-IDF), so an ensemble does not share one
batch: each member runs on its own datamodule (rebuilt from the run's ``config.yaml``) and the outputs are joined
by row id. Per member, a temperature is fitted on the validation split (temperature scaling, Guo et al. 2017),
then the mixing weights (a softmax over one logit per member) minimise the validation log-loss of
``sum_k w_k softmax(z_k / T_k)``. When one member alone scores at least as well on the validation split as the
fitted combination (macro-F1, the classifiers' headline metric), the ensemble falls back to that member: all weight
on it, so it predicts exactly as that member does: an ensemble is then never worse than its best member on
validation. The temperatures are fitted as a single model's are
(:mod:`zoo.reporting.calibration`), the weights with ``torch.optim.LBFGS``: scikit-learn has no weighted
probability ensemble of already-trained models, and this is a few lines on top of torch.

``ensemble.json`` records everything needed to rebuild it: each member's run directory, checkpoint and data
settings, its temperature and weight, the class names, the validation scores, and the fallback when there was one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from zoo.checkpoints import load_checkpoint, restore_data_state
from zoo.errors import ZooError
from zoo.inference.ensemble import calibrated, combine
from zoo.registry import DATAMODULES
from zoo.reporting.io import atomic_write_text

FORMAT = 1
#: what ``--out`` holds and what ``zoo export`` / ``zoo serve`` recognise an ensemble directory by
FILE = "ensemble.json"
#: the score that decides between the combination and its best member (the classifiers' monitored val/f1_macro)
HEADLINE = "f1_macro"


class EnsembleError(ZooError, ValueError):
    """Runs that cannot be ensembled, or a broken ensemble directory."""


@dataclass
class Outputs:
    """A member's outputs on one split: row ids, logits ``[N, C]``, labels (``None`` without labels) and the raw
    texts of the rows where the batches carry them (what an exported ensemble is verified on)."""

    ids: list[str]
    logits: Tensor
    labels: Tensor | None
    texts: list[str] = field(default_factory=list)


@dataclass
class Member:
    run: str
    checkpoint: str
    data: dict[str, Any]
    temperature: float = 1.0
    weight: float = 1.0
    _model: Any = field(default=None, repr=False)

    @classmethod
    def from_run(cls, run: str | Path, checkpoint: str = "best.ckpt") -> Member:
        run = Path(run)
        config, ckpt = run / "config.yaml", run / "checkpoints" / checkpoint
        if not config.is_file():
            raise EnsembleError(f"--runs {run}: no config.yaml there; give run directories written by `zoo fit` "
                                "(runs/<recipe>/version_N)")
        if not ckpt.is_file():
            raise EnsembleError(f"--runs {run}: no checkpoints/{checkpoint}")
        import yaml

        data = (yaml.safe_load(config.read_text()) or {}).get("data")
        if not isinstance(data, dict) or "class_path" not in data:
            raise EnsembleError(f"{config}: no data.class_path; cannot rebuild this run's data")
        return cls(run=str(run), checkpoint=str(ckpt), data=data)

    def model(self) -> Any:
        if self._model is None:
            self._model = load_checkpoint(self.checkpoint, map_location="cpu").eval()
        return self._model

    def datamodule(self, predict: str | None = None) -> Any:
        path = str(self.data["class_path"])
        if "." in path:  # a run's config.yaml names it: resolved without importing anything on its word
            from zoo.checkpoints import resolve_datamodule_class

            cls = resolve_datamodule_class(path)
            if cls is None:
                raise EnsembleError(f"{self.run}/config.yaml: data class {path!r:.120} is not a zoo datamodule (nor "
                                    "one this program imported); zoo imports no module a file names")
        else:
            cls = DATAMODULES.entry(path).fn
        kwargs = dict(self.data.get("init_args") or {})
        if predict is not None:
            kwargs["predict"] = predict
        datamodule = cls(**kwargs)
        restore_data_state(datamodule, self.checkpoint)  # an n-gram member's fitted featuriser, not a refit
        return datamodule

    def outputs(self, split: str, predict: str | None = None) -> Outputs:
        """Logits on ``split`` (``train`` / ``val`` / ``test``, or ``predict`` with a file)."""
        dm = self.datamodule(predict)
        model = self.model()
        model.bind_data(dm)
        loader = dm.predict_dataloader() if split == "predict" else dm.split_loader(split, train=False, grouped=False)
        ids: list[str] = []
        texts: list[str] = []
        logits, labels = [], []
        with torch.no_grad():
            for batch in loader:
                logits.append(model(batch).float())
                ids += [str(i) for i in batch.get("id", [])]
                texts += list(batch.get("text", []))
                if "label" in batch:
                    labels.append(batch["label"])
        return Outputs(ids, torch.cat(logits), torch.cat(labels) if labels and len(labels) == len(logits) else None,
                       texts if len(texts) == len(ids) else [])

    def probabilities(self, logits: Tensor) -> Tensor:
        return calibrated(logits, self.temperature)


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The temperature minimising the log-loss of ``softmax(logits / T)``: the same fit as a single model's
    (:func:`zoo.reporting.calibration.fit_temperature`)."""
    from zoo.reporting.calibration import fit_temperature as fit

    return float(fit(logits, labels))


def fit_weights(probs: list[Tensor], labels: Tensor) -> list[float]:
    """Simplex weights minimising the log-loss of the weighted mixture of ``probs`` (one ``[N, C]`` per member)."""
    stack = torch.stack(probs)  # [K, N, C]
    z = torch.zeros(len(probs), requires_grad=True)
    opt = torch.optim.LBFGS([z], lr=0.1, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        mix = (z.softmax(0)[:, None, None] * stack).sum(0)
        loss = torch.nn.functional.nll_loss(mix.clamp_min(1e-12).log(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return [float(w) for w in z.detach().softmax(0)]


def _aligned(outs: list[Outputs], members: list[Member], split: str) -> None:
    ref = outs[0]
    for m, o in zip(members[1:], outs[1:]):
        if sorted(o.ids) != sorted(ref.ids):
            raise EnsembleError(f"the {split} split of {m.run} holds other rows than that of {members[0].run}; "
                                "ensemble runs trained on the same data, seed and split fractions")
        order = {i: k for k, i in enumerate(o.ids)}
        idx = torch.tensor([order[i] for i in ref.ids])
        o.logits = o.logits[idx]
        o.labels = o.labels[idx] if o.labels is not None else None
        o.texts = [o.texts[k] for k in idx.tolist()] if o.texts else []
        o.ids = list(ref.ids)


class Ensemble:
    """Members with their temperatures and weights; :meth:`fit` on validation, :meth:`predict` on any split."""

    def __init__(self, members: list[Member], class_names: list[str], validation: dict[str, Any] | None = None,
                 fallback: dict[str, Any] | None = None) -> None:
        self.members = members
        self.class_names = class_names
        #: validation scores of the fitted combination and of each member (:meth:`fit`)
        self.validation = validation
        #: why all weight went to one member (:meth:`choose`), or None when the combination won
        self.fallback = fallback

    @classmethod
    def from_runs(cls, runs: list[str], checkpoint: str = "best.ckpt") -> Ensemble:
        if len(runs) < 2:
            raise EnsembleError(f"--runs needs at least 2 run directories, got {len(runs)}")
        members = [Member.from_run(r, checkpoint) for r in runs]
        names = [list(m.model().class_names or []) for m in members]
        for m, n in zip(members[1:], names[1:]):
            if n != names[0]:
                raise EnsembleError(f"{m.run} predicts classes {n} but {members[0].run} predicts {names[0]}; "
                                    "an ensemble needs one label set in one order")
        if any(getattr(m.model(), "multi_label", False) for m in members):
            raise EnsembleError("multi-label runs cannot be ensembled yet (single-label classifiers only)")
        return cls(members, names[0])

    def active(self) -> list[Member]:
        """The members with a weight above zero (one after a fallback): the only ones :meth:`predict` runs."""
        return [m for m in self.members if m.weight > 0]

    def outputs(self, split: str, predict: str | None = None, members: list[Member] | None = None) -> list[Outputs]:
        members = self.members if members is None else members
        outs = [m.outputs(split, predict) for m in members]
        _aligned(outs, members, split)
        return outs

    def fit(self) -> list[Outputs]:
        """Fit each member's temperature, then the weights, on the validation split; returns its outputs."""
        outs = self.outputs("val")
        labels = outs[0].labels
        if labels is None or labels.ndim != 1:
            raise EnsembleError("the validation split has no single-label targets to fit the ensemble on")
        for m, o in zip(self.members, outs):
            m.temperature = fit_temperature(o.logits, labels)
        weights = fit_weights([m.probabilities(o.logits) for m, o in zip(self.members, outs)], labels)
        for m, w in zip(self.members, weights):
            m.weight = w
        self.choose(outs, labels)
        return outs

    def choose(self, outs: list[Outputs], labels: Tensor) -> None:
        """Keep the fitted weights only when the combination beats every member on validation; otherwise put all
        weight on the best member. The weights minimise log-loss, not the headline score, so the mixture can score
        below a member (on BBC the fitted fastText + TF-IDF mix tested below TF-IDF alone, docs/text.md)."""
        n = len(self.class_names)
        combined = scores(self.combine(outs), labels, n)
        members = [scores(o.logits, labels, n) for o in outs]
        losses = [float(torch.nn.functional.nll_loss(m.probabilities(o.logits).clamp_min(1e-12).log(), labels))
                  for m, o in zip(self.members, outs)]
        self.validation = {"ensemble": combined, "members": members}
        # ties between members: the better accuracy, then the lower calibrated log-loss, then the first given
        best = min(range(len(outs)), key=lambda k: (-members[k][HEADLINE], -members[k]["acc"], losses[k], k))
        if members[best][HEADLINE] < combined[HEADLINE]:
            self.fallback = None
            return
        self.fallback = {"member": self.members[best].run, "metric": HEADLINE,
                         "member_score": members[best][HEADLINE], "combination_score": combined[HEADLINE],
                         "fitted_weights": [m.weight for m in self.members],
                         "reason": f"{self.members[best].run} alone scores validation {HEADLINE} "
                                   f"{members[best][HEADLINE]:.4f} >= the fitted combination's "
                                   f"{combined[HEADLINE]:.4f}"}
        for k, m in enumerate(self.members):
            m.weight = 1.0 if k == best else 0.0

    def combine(self, outs: list[Outputs], members: list[Member] | None = None) -> Tensor:
        """The weighted mixture of the members' calibrated probabilities; members of weight 0 add nothing, so
        after a fallback this is exactly the chosen member's ``softmax(z / T)``. The formula is
        :func:`zoo.inference.ensemble.combine`, which an exported ensemble answers with too."""
        members = self.members if members is None else members
        return combine([o.logits for o in outs], [m.temperature for m in members], [m.weight for m in members])

    def predict(self, split: str, predict: str | None = None) -> tuple[list[str], Tensor, Tensor | None]:
        """``(ids, probabilities [N, C], labels or None)`` on ``split``; members of weight 0 are not run."""
        members = self.active()
        outs = self.outputs(split, predict, members)
        return outs[0].ids, self.combine(outs, members), outs[0].labels

    # -- saving -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "class_names": self.class_names,
                "members": [{"run": m.run, "checkpoint": m.checkpoint, "data": m.data, "temperature": m.temperature,
                             "weight": m.weight} for m in self.members],
                "validation": self.validation, "fallback": self.fallback}

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Ensemble:
        path = Path(path)
        file = path / FILE if path.is_dir() else path
        try:
            spec = json.loads(file.read_text())
            members = [Member(run=m["run"], checkpoint=m["checkpoint"], data=m["data"],
                              temperature=float(m["temperature"]), weight=float(m["weight"]))
                       for m in spec["members"]]
            names = list(spec["class_names"])
            # optional: null for an ensemble that was never fitted, and a hand-written file may leave them out
            validation, fallback = spec.get("validation"), spec.get("fallback")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise EnsembleError(f"{file}: not a zoo ensemble ({type(err).__name__}: {err})") from None
        for m in members:
            if m.weight > 0 and not Path(m.checkpoint).is_file():
                raise EnsembleError(f"{file}: member checkpoint {m.checkpoint} is missing")
        if not any(m.weight > 0 for m in members):
            raise EnsembleError(f"{file}: no member has a weight above 0")
        return cls(members, names, validation, fallback)


def scores(probs: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (torchmetrics) of ``probs`` against ``labels``."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    pred = probs.argmax(-1)
    return {"acc": float(multiclass_accuracy(pred, labels, num_classes, average="micro")),
            "f1_macro": float(multiclass_f1_score(pred, labels, num_classes, average="macro"))}


__all__ = ["FILE", "HEADLINE", "Ensemble", "EnsembleError", "Member", "Outputs", "fit_temperature", "fit_weights",
           "scores"]
