"""Each adapter of zoo/compat.py against the installed dependencies: when an upgrade moves a private API that
zoo leans on, these fail with the adapter's name instead of a training run failing somewhere deep."""

import importlib.metadata

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from zoo import compat


@pytest.mark.parametrize("package", sorted(compat.VERIFIED_WITH))
def test_installed_release_is_the_one_the_adapters_were_checked_against(package):
    installed = importlib.metadata.version(package)
    assert installed.split("+")[0] == compat.VERIFIED_WITH[package], (
        f"{package} {installed} is installed but zoo/compat.py was checked against {compat.VERIFIED_WITH[package]}: "
        "re-run tests/architecture/test_compat.py, fix any adapter that broke, then update VERIFIED_WITH")


def test_logger_will_update_reads_lightnings_logger_connector():
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    assert compat.logger_will_update(trainer) in (True, False)
    assert compat.logger_will_update(object()) is None


def test_rich_available_matches_the_import():
    import importlib.util

    assert compat.rich_available() == (importlib.util.find_spec("rich") is not None)


def test_wandb_init_kwargs_is_the_dict_passed_to_wandb_init(tmp_path):
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="p")
    kwargs = compat.wandb_init_kwargs(logger)
    assert isinstance(kwargs, dict) and kwargs.get("project") == "p"


def test_ddp_ignore_keeps_the_named_parameters_out_of_ddp(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    compat.ddp_ignore(model, ["0.weight"])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert DistributedDataParallel(model).parameters_to_ignore == {"0.weight"}
    finally:
        dist.destroy_process_group()


def test_is_compiled_sees_module_compile():
    layer = nn.Linear(2, 2)
    assert not compat.is_compiled(layer)
    layer.compile()
    assert compat.is_compiled(layer)


def test_norm_layers_with_running_stats_finds_batch_norm_only():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.GroupNorm(1, 2),
                        nn.InstanceNorm2d(2, track_running_stats=True))
    found = list(compat.norm_layers_with_running_stats(net))
    assert found == [net[1], net[3]]


def test_jsonargparse_debug_mode_is_off_by_default(monkeypatch):
    monkeypatch.delenv("JSONARGPARSE_DEBUG", raising=False)
    assert compat.jsonargparse_debug_mode() is False


def test_parser_actions_lists_the_options():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr")
    assert "lr" in [a.dest for a in compat.parser_actions(parser)]


def test_class_name_resolver_reaches_jsonargparse():
    from jsonargparse import ArgumentParser

    from zoo.cli import _install_registry_names

    _install_registry_names()
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--model", type=pl.LightningModule)
    cfg = parser.parse_args(["--model", '{"class_path": "image_classifier", "init_args": {"num_classes": 2}}'])
    assert cfg.model.class_path == "zoo.tasks.image.ImageClassifier"
    # dotted paths are left to jsonargparse
    cfg = parser.parse_args(["--model", '{"class_path": "zoo.tasks.image.ImageClassifier"}'])
    assert cfg.model.class_path == "zoo.tasks.image.ImageClassifier"


def test_checkpoint_hook_replaces_lightnings_ckpt_path_step(tmp_path, monkeypatch):
    import torch
    from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel

    ckpt = tmp_path / "model.ckpt"
    # Lightning's own step would merge these into the model's config and stop: BoringModel takes no "width"
    torch.save({"hyper_parameters": {"width": 3}, "state_dict": {}}, ckpt)
    seen = []

    class Stop(Exception):
        pass

    class CLI(compat.LightningCLIWithCheckpointHook):
        def merge_checkpoint_hyperparameters(self):
            # after parse_arguments (the config holds --ckpt_path), before instantiate_classes (no model yet)
            seen.append((self.config.fit.ckpt_path, hasattr(self, "model")))

        def before_instantiate_classes(self):
            raise Stop

    real_load = torch.load
    monkeypatch.setattr(torch, "load",
                        lambda *a, **k: pytest.fail("Lightning read the checkpoint itself") or real_load(*a, **k))
    with pytest.raises(Stop):
        CLI(BoringModel, BoringDataModule, args=["fit", "--ckpt_path", str(ckpt)])
    assert seen == [(str(ckpt), False)]


def test_attached_trainer_is_none_until_a_trainer_runs_the_module():
    from lightning.pytorch.demos.boring_classes import BoringModel

    module = BoringModel()
    assert compat.attached_trainer(module) is None
    with pytest.raises(RuntimeError):
        module.trainer  # noqa: B018  (what the adapter spares its callers)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    module.trainer = trainer
    assert compat.attached_trainer(module) is trainer


def test_is_last_batch_follows_the_fit_loop(tmp_path):
    from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
    from torch.utils.data import DataLoader

    seen = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            seen.append(compat.is_last_batch(trainer))

    class Model(BoringModel):
        def train_dataloader(self):
            return DataLoader(RandomDataset(32, 6), batch_size=2)

    trainer = pl.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, callbacks=[Record()], default_root_dir=tmp_path)
    trainer.fit(Model())
    assert seen == [False, False, True] * 2


def test_config_value_reads_under_the_subcommand():
    from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel

    seen = []

    class Stop(Exception):
        pass

    class CLI(compat.LightningCLIWithCheckpointHook):
        def before_instantiate_classes(self):
            seen.append(self.config_value(self.config, "trainer")["max_epochs"])
            seen.append(self.config_value(self.config, "no_such_key", default="dflt"))
            raise Stop

    with pytest.raises(Stop):
        CLI(BoringModel, BoringDataModule, args=["fit", "--trainer.max_epochs", "3"])
    assert seen == [3, "dflt"]


def test_sparse_rows_keeps_a_repeated_row_uncoalesced():
    table = nn.Embedding(5, 3, sparse=True)
    table(torch.tensor([1, 1, 2])).sum().backward()
    grad = table.weight.grad
    assert grad.is_sparse and not grad.is_coalesced()
    rows, values = compat.sparse_rows(grad)
    assert rows.tolist() == [1, 1, 2] and values.shape == (3, 3)
    assert torch.equal(values, torch.ones(3, 3))


def test_optuna_trial_id_is_the_storages_not_the_studys_number():
    import optuna

    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="a").ask()
    trial = optuna.create_study(storage=storage, study_name="b").ask()
    assert trial.number == 0
    trial_id = compat.optuna_trial_id(trial)
    assert trial_id == 1 and storage.get_trial(trial_id).number == 0
