"""The settings table, iterated: every technique x every registered model (via tiny_case) + the text and
recommendation test doubles. Each cell where the technique applies: a 2-step fit runs, its loss term is finite
and logged, parameters change, neither ``emb`` nor the model is modified by the technique (no leak into the
next step or eval), and the step does exactly one backward. Where it does not apply: a clear error at setup."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from tests.common.helpers import quiet_trainer
from tests.common.technique_doubles import recsys_case, text_case
from zoo.contract import TechniqueNotApplicableError
from zoo.registry import MODELS
from zoo.techniques import Distillation
from zoo.techniques.table import applies, example, technique_names

CASES = {f"model:{name}": MODELS.entry(name).meta["tiny_case"] for name in MODELS.list()}
CASES["double:text"] = text_case
CASES["double:recsys"] = recsys_case
TECHNIQUES = technique_names()
#: techniques that rewrite the batch / embedding instead of adding a loss term
BATCH_TRANSFORMS = {"mixup", "cutmix"}


def build_case(case: str, tmp_path):
    pl.seed_everything(0, verbose=False)
    model, data = CASES[case](tmp_path)
    model.bind_data(data)  # lazily built tasks: build now so the teacher copy has weights
    return model, data


def make_technique(name: str, model):
    if name == "distillation":
        teacher = copy.deepcopy(model)
        g = torch.Generator().manual_seed(1)  # not the global RNG: the data order must match the plain run
        with torch.no_grad():
            for p in teacher.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g).to(p))
        return Distillation(teacher=teacher, temperature=2.0)
    return example(name)


class Probe(pl.Callback):
    """Watches each step: parameters and buffers untouched between batch start and backward, ``emb`` not
    modified in place, train mode kept, backward calls counted."""

    def __init__(self, model) -> None:
        self.violations: list[str] = []
        self.first_buffers: dict[str, torch.Tensor] | None = None
        self.task_losses: list[float] = []
        self._embs: list[tuple[object, object]] = []
        self._first_loss = False
        original = model.embed

        def embed(batch):
            emb = original(batch)
            leaves = emb.values() if isinstance(emb, dict) else [emb]
            self._embs.append((emb, [t.detach().clone() for t in leaves]))
            return emb

        model.embed = embed
        original_loss = model.task_loss

        def task_loss(out, batch):
            loss = original_loss(out, batch)
            if self._first_loss:  # the step's clean loss comes first
                self.task_losses.append(float(loss.detach()))
                self._first_loss = False
            return loss

        model.task_loss = task_loss

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._params = {k: v.detach().clone() for k, v in pl_module.named_parameters()}
        self._embs.clear()
        self._first_loss = True

    def on_before_backward(self, trainer, pl_module, loss):
        for k, v in pl_module.named_parameters():
            if not torch.equal(v.detach(), self._params[k]):
                self.violations.append(f"parameter {k} changed inside the step")
        if not pl_module.training:
            self.violations.append("module left in eval mode")
        for emb, saved in self._embs:
            leaves = emb.values() if isinstance(emb, dict) else [emb]
            if any(not torch.equal(a.detach(), b) for a, b in zip(leaves, saved)):
                self.violations.append("emb modified in place")
        if self.first_buffers is None:
            self.first_buffers = {k: v.detach().clone() for k, v in pl_module.named_buffers()}


def fit_two_steps(model, data, callbacks, monkeypatch):
    calls = []
    original = torch.autograd.backward

    def counting_backward(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "backward", counting_backward)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=1,
                            callbacks=callbacks)
    trainer.fit(model, data)
    monkeypatch.setattr(torch.autograd, "backward", original)
    return trainer, len(calls)


_PLAIN: dict[str, Probe] = {}


def plain_run(case: str, tmp_path, monkeypatch) -> Probe:
    if case not in _PLAIN:
        model, data = build_case(case, tmp_path)
        probe = Probe(model)
        fit_two_steps(model, data, [probe], monkeypatch)
        _PLAIN[case] = probe
    return _PLAIN[case]


DOC = Path(__file__).resolve().parents[2] / "docs" / "techniques.md"
DOC_COLUMNS = {"image": "model:image_classifier", "text": "double:text", "recsys": "double:recsys"}


def doc_table() -> dict[str, dict[str, bool]]:
    rows: dict[str, dict[str, bool]] = {}
    text = DOC.read_text().split("## Settings table", 1)[1]
    lines = []
    for line in text.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:  # the first table ends here
            break
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = re.sub(r"[`*]", "", cells[1]).strip()
        rows[key] = {h: cells[i].startswith("yes") for i, h in enumerate(header) if h in DOC_COLUMNS}
    return rows


def fast_cells() -> set[tuple[str, str]]:
    """The cells of the fast lane (`make test-fast`): each technique once, on the cheapest case where the docs table
    says it applies (test_docs_table_matches_code holds the table to the code), and each case once, with the
    techniques taken in turn. `make test` runs every cell."""
    table = doc_table()
    cells = {(name, next((DOC_COLUMNS[c] for c in ("recsys", "text", "image") if table.get(name, {}).get(c)),
                         DOC_COLUMNS["image"])) for name in TECHNIQUES}
    return cells | {(TECHNIQUES[i % len(TECHNIQUES)], case) for i, case in enumerate(CASES)}


FAST_CELLS = fast_cells()


@pytest.mark.parametrize("name, case", [
    pytest.param(name, case, id=f"{name}-{case}", marks=() if (name, case) in FAST_CELLS else pytest.mark.slow)
    for name in TECHNIQUES for case in CASES])
def test_technique_cell(name, case, tmp_path, monkeypatch):
    model, data = build_case(case, tmp_path)
    technique = make_technique(name, model)
    ok, reason = applies(technique, model)
    if not ok:
        with pytest.raises(TechniqueNotApplicableError, match=type(technique).__name__):
            quiet_trainer(max_steps=2, limit_val_batches=0, num_sanity_val_steps=0,
                          callbacks=[technique]).fit(model, data)
        return
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    probe = Probe(model)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=1,
                            callbacks=[technique, probe])
    calls = []
    original = torch.autograd.backward
    monkeypatch.setattr(torch.autograd, "backward", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    trainer.fit(model, data)
    monkeypatch.setattr(torch.autograd, "backward", original)

    assert len(calls) == 2, f"{name} on {case}: {len(calls)} backward calls in 2 steps"
    assert not probe.violations, probe.violations
    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["train/loss"]))
    if name not in BATCH_TRANSFORMS:
        term = metrics.get(f"train/loss_{technique.name}")
        assert term is not None and math.isfinite(float(term)), f"train/loss_{technique.name} not logged"
        plain = plain_run(case, tmp_path, monkeypatch)
        # the clean forward of step 1 is the same with or without the technique: no leak from its extra forwards
        assert probe.task_losses[0] == pytest.approx(plain.task_losses[0], rel=1e-6, abs=1e-7)
        for key, value in (plain.first_buffers or {}).items():
            assert torch.equal(probe.first_buffers[key], value), f"{name} moved buffer {key}"
    changed = [k for k, v in model.named_parameters() if not torch.equal(before[k], v.detach())]
    assert changed, f"{name} on {case}: no parameter changed"


def test_the_fast_lane_runs_every_technique_and_every_case():
    assert {name for name, _ in FAST_CELLS} == set(TECHNIQUES)
    assert {case for _, case in FAST_CELLS} == set(CASES)


def test_table_covers_every_technique():
    assert {"fgm", "pgd", "freelb", "smart", "rdrop", "mixup", "cutmix", "l2sp", "distillation"} <= set(TECHNIQUES)


def test_docs_table_matches_code(tmp_path):
    table = doc_table()
    for name in TECHNIQUES:
        assert name in table, f"docs/techniques.md has no row for {name}"
        for column, case in DOC_COLUMNS.items():
            model, _ = build_case(case, tmp_path)
            ok, reason = applies(make_technique(name, model), model)
            assert table[name][column] == ok, (f"docs say {name} x {column} = {table[name][column]}, "
                                               f"code says {ok}: {reason}")
