"""Techniques in small fits: a plain LightningModule, bad modules and teachers, early stopping defaults,
robust evaluation, EMA, warm-up gates and the YAML recipe."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn

from tests.common.helpers import quiet_trainer
from tests.common.technique_doubles import (
    ListDataModule,
    PlainContractModule,
    TinyTextClassifier,
    text_case,
    text_items,
)
from zoo.callbacks import TaskEarlyStopping
from zoo.registry import MODELS
from zoo.techniques import (
    EMA,
    FGM,
    L2SP,
    AdversarialEvaluation,
    Distillation,
    TeacherMismatchError,
    TechniqueNotApplicableError,
)

REPO = Path(__file__).resolve().parents[2]


def _text_data(batch_size=8):
    return ListDataModule(text_items(32), text_items(16, seed=1), text_items(16, seed=2), batch_size)


def test_plain_lightning_module_gets_fgm_through_contract_training_step(monkeypatch):
    pl.seed_everything(0, verbose=False)
    model = PlainContractModule()
    from zoo.tasks.base import ZooTask

    assert not isinstance(model, ZooTask)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    calls = []
    original = torch.autograd.backward
    monkeypatch.setattr(torch.autograd, "backward", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0, log_every_n_steps=1, callbacks=[FGM(eps=0.5)])
    trainer.fit(model, _text_data())
    monkeypatch.setattr(torch.autograd, "backward", original)
    assert len(calls) == 2
    fgm = float(trainer.callback_metrics["train/loss_fgm"])
    assert math.isfinite(fgm) and fgm > float(trainer.callback_metrics["train/loss_task"]) - 1.0
    assert any(not torch.equal(before[k], v) for k, v in model.named_parameters())


class NoEmbed(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(6, 3)

    def training_step(self, batch, i):
        return self.layer(batch["input_ids"].float()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_technique_on_a_module_without_embed_is_refused_at_setup():
    with pytest.raises(TechniqueNotApplicableError,
                       match=r"FGM needs .*NoEmbed lacks embed, forward_embedded, task_loss"):
        quiet_trainer(max_steps=1, callbacks=[FGM(eps=0.1)]).fit(NoEmbed(), _text_data())


def test_mixup_on_a_recommender_is_refused_at_setup():
    from tests.common.technique_doubles import recsys_case
    from zoo.techniques import Mixup

    model, data = recsys_case()
    with pytest.raises(TechniqueNotApplicableError, match="Mixup .*TinyRecommender does not take soft targets"):
        quiet_trainer(max_steps=1, callbacks=[Mixup()]).fit(model, data)


def _save_text_checkpoint(tmp_path, num_classes, class_names=None) -> Path:
    pl.seed_everything(0, verbose=False)
    model = TinyTextClassifier(num_classes=num_classes, class_names=class_names)
    items = [dict(it, label=it["label"] % num_classes) for it in text_items(16)]
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(model, ListDataModule(items, items, items, 8))
    path = tmp_path / f"teacher{num_classes}.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_teacher_with_other_classes_is_refused(tmp_path):
    path = _save_text_checkpoint(tmp_path, num_classes=4)
    student, data = text_case()
    with pytest.raises(TeacherMismatchError, match=r"teacher .*teacher4.ckpt predicts 4 classes .* student has 3"):
        quiet_trainer(max_steps=1, callbacks=[Distillation(teacher=str(path))]).fit(student, data)
    other_names = TinyTextClassifier(class_names=["x", "y", "z"])
    with pytest.raises(TeacherMismatchError, match=r"x, y, z.*a, b, c"):
        quiet_trainer(max_steps=1, callbacks=[Distillation(teacher=other_names)]).fit(text_case()[0], data)


def test_distillation_from_a_checkpoint_keeps_the_teacher_out_of_the_student(tmp_path):
    path = _save_text_checkpoint(tmp_path, num_classes=3, class_names=["a", "b", "c"])
    student, data = text_case()
    distill = Distillation(teacher=str(path), temperature=2.0)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0, log_every_n_steps=1, callbacks=[distill])
    trainer.fit(student, data)
    assert float(trainer.callback_metrics["train/loss_distill"]) > 0
    assert not distill.teacher.training and not any(p.requires_grad for p in distill.teacher.parameters())
    trainer.save_checkpoint(tmp_path / "student.ckpt")
    ckpt = torch.load(tmp_path / "student.ckpt", weights_only=True)
    assert set(ckpt["state_dict"]) == set(student.state_dict())
    states = [v for k, v in ckpt["callbacks"].items() if "Distillation" in k]
    assert states and not any(isinstance(v, dict) and any(torch.is_tensor(t) and t.ndim > 1 for t in v.values())
                              for v in states)


def test_task_early_stopping_reads_the_monitor_from_the_task():
    model, data = text_case(lr=1e-12)  # nothing improves: stops after patience epochs
    stop = TaskEarlyStopping(patience=1)
    trainer = quiet_trainer(max_epochs=6, callbacks=[stop], num_sanity_val_steps=0)
    trainer.fit(model, data)
    assert stop.monitor == "val/f1_macro" and stop.mode == "max" and stop.min_delta >= 0
    assert trainer.current_epoch < 6 and stop.stopped_epoch > 0
    explicit = TaskEarlyStopping(monitor="val/loss", mode="min")
    explicit.setup(trainer, model, "fit")
    assert explicit.monitor == "val/loss" and explicit.mode == "min"


def test_adversarial_evaluation_logs_robust_accuracy(tmp_path):
    pl.seed_everything(0, verbose=False)
    model, data = MODELS.entry("image_classifier").meta["tiny_case"](tmp_path)
    quiet_trainer(max_steps=4, limit_val_batches=0).fit(model, data)
    evaluation = AdversarialEvaluation(eps=[1e-7, 1.0], steps=1)
    res = quiet_trainer(limit_test_batches=1, callbacks=[evaluation]).test(model, data, verbose=False)[0]
    clean = res["test/acc"]
    assert res["test/robust_acc@1e-07"] == pytest.approx(clean, abs=1e-6)
    assert res["test/robust_acc@1"] <= clean
    assert 0.0 <= res["test/robust_acc@1"] <= 1.0


def test_adversarial_evaluation_needs_a_classifier():
    from tests.common.technique_doubles import recsys_case

    model, data = recsys_case()
    with pytest.raises(TechniqueNotApplicableError, match="not a classifier"):
        quiet_trainer(callbacks=[AdversarialEvaluation(eps=0.1)]).test(model, data, verbose=False)


def test_ema_and_l2sp_on_a_lazily_built_image_model(tmp_path):
    """Python API: the model learns its classes from the data in its own setup, which Lightning runs after the
    callbacks' setup; EMA's copy and L2-SP's starting point must still be of the built model."""
    pl.seed_everything(0, verbose=False)
    model, data = MODELS.entry("image_classifier").meta["tiny_case"](tmp_path)
    assert model.num_classes is None  # built lazily, from the data
    l2sp = L2SP(alpha=0.1)
    ema = EMA(decay=0.5)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0, log_every_n_steps=1,
                            callbacks=[l2sp, ema])
    trainer.fit(model, data)
    assert float(trainer.callback_metrics["train/loss_l2sp"]) > 0
    assert set(l2sp.state_dict()["reference"]) == {n for n, p in model.named_parameters() if p.requires_grad}
    averaged = {n.removeprefix("module.") for n, _ in ema._average_model.named_parameters()}
    assert averaged == {n for n, _ in model.named_parameters()}  # the copy has the head built from the data
    # the average moved away from the starting weights, towards the trained ones
    start = l2sp.state_dict()["reference"]
    average = dict(ema._average_model.module.named_parameters())
    assert any(not torch.equal(average[n].detach(), start[n]) for n in start)

    # resuming restores the average into a copy of a model that is again built only from the data
    trainer.save_checkpoint(tmp_path / "ema.ckpt")
    resumed, data2 = MODELS.entry("image_classifier").meta["tiny_case"](tmp_path)
    ema2, l2sp2 = EMA(decay=0.5), L2SP(alpha=0.1)
    quiet_trainer(max_steps=3, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[l2sp2, ema2]).fit(
        resumed, data2, ckpt_path=tmp_path / "ema.ckpt")
    assert ema2._average_model is not None
    assert all(torch.equal(l2sp2.state_dict()["reference"][n], start[n]) for n in start)


@pytest.mark.slow
def test_ema_and_l2sp_on_a_lazily_built_image_model_through_the_cli(tmp_path):
    from zoo.cli import main

    recipe = REPO / "recipes" / "vision" / "digits_tiny.yaml"
    callbacks = ['{"class_path": "ema", "init_args": {"decay": 0.5}}',
                 '{"class_path": "l2sp", "init_args": {"alpha": 0.1}}']
    args = ["fit", "--config", str(recipe), "--model.init_args.num_classes", "null",
            "--model.init_args.in_channels", "null", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"]
    for cb in callbacks:
        args += ["--trainer.callbacks+", cb]
    assert main(args) in (0, None)
    ckpt = torch.load(next(Path("runs").rglob("last.ckpt")), weights_only=False, map_location="cpu")
    assert "current_model_state" in ckpt and "averaging_state" in ckpt  # EMA wrote the average
    l2sp_state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("L2SP"))
    # every weight, the head included; the calibration temperature is a buffer fitted after training, not a weight
    assert set(l2sp_state["reference"]) == set(ckpt["current_model_state"]) - {"temperature"}


def test_warm_up_gate_skips_the_first_steps():
    model, data = text_case()
    fgm = FGM(eps=0.5, start_step=1)
    seen = []
    original = fgm.loss_terms
    fgm.loss_terms = lambda module, *a: (seen.append(module.global_step), original(module, *a))[1]
    quiet_trainer(max_steps=3, limit_val_batches=0, callbacks=[fgm]).fit(model, data)
    assert seen == [1, 2]


@pytest.mark.slow
def test_robust_recipe_runs_from_yaml_with_registry_names(tmp_path):
    from zoo.cli import main

    recipe = REPO / "recipes" / "vision" / "digits_robust.yaml"
    small = ["--data.init_args.batch_size", "16", "--trainer.enable_progress_bar", "false"]
    assert main(["fit", "--config", str(recipe), "--trainer.fast_dev_run", "2", *small]) == 0
    assert main(["test", "--config", str(recipe), "--trainer.limit_test_batches", "1", "--allow_untrained", "true",
                 *small]) == 0
    header = next(Path("runs/digits_robust").glob("version_*/metrics.csv")).read_text().splitlines()[0]
    assert "test/robust_acc@0.05" in header and "test/robust_acc@0.1" in header and "test/acc" in header


def test_distillation_from_a_local_hf_directory(tmp_path):
    """A transformers sequence classifier saved to disk teaches a zoo student (vocabulary of 40 ids: the tiny
    BERT's is larger), with and without mixup on the token embeddings."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    from zoo.backbones.text import tiny_bert_dir
    from zoo.techniques import Mixup

    base = tiny_bert_dir(tmp_path / "bert")
    config = BertConfig.from_pretrained(str(base), num_labels=3)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(str(tmp_path / "teacher"))
    for extra in ([], [Mixup(alpha=0.4)]):
        student, data = text_case()
        distill = Distillation(teacher=str(tmp_path / "teacher"), temperature=2.0)
        trainer = quiet_trainer(max_steps=2, limit_val_batches=0, log_every_n_steps=1, callbacks=[*extra, distill])
        trainer.fit(student, data)
        term = float(trainer.callback_metrics["train/loss_distill"])
        assert math.isfinite(term) and term > 0
        assert not distill.teacher.training and not any(p.requires_grad for p in distill.teacher.parameters())
        assert set(student.state_dict()) == set(TinyTextClassifier().state_dict())


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_distillation_teacher_sees_the_students_mixed_input(tmp_path, mix):
    """Under mixup / cutmix the student learns on mixed pixels; the teacher's target must come from the same
    mixed pixels, not from the clean batch."""
    import copy

    from zoo.techniques import CutMix, Mixup

    model, data = MODELS.entry("image_classifier").meta["tiny_case"](tmp_path)
    model.bind_data(data)
    teacher = copy.deepcopy(model)
    seen: dict[str, list[Tensor]] = {"student": [], "teacher": []}
    for name, module in (("student", model), ("teacher", teacher)):
        original = module.forward_embedded

        def spy(emb, batch, _original=original, _name=name):
            seen[_name].append(emb.detach().clone())
            return _original(emb, batch)

        module.forward_embedded = spy
    mixer = Mixup(alpha=1.0) if mix == "mixup" else CutMix(alpha=1.0)
    quiet_trainer(max_steps=1, limit_val_batches=0, callbacks=[mixer, Distillation(teacher=teacher)]).fit(model, data)
    student_input, teacher_input = seen["student"][0], seen["teacher"][0]
    assert torch.equal(student_input, teacher_input)
    assert mixer.replay is None  # cleared after the step
