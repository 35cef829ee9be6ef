"""The TorchRec overlay (recipes/overlays/strategy/torchrec.yaml) on 2 gloo CPU processes, through the CLI (torchrun):
BPR's and two-tower's ID tables sharded by TorchRec's planner under DistributedModelParallel (zoo.tasks.recsys.sharded).

* BPR, 2 processes = 1 process: recsys batches are global (each rank keeps its strided share), TorchRec divides
  the gradients it returns to a shard's owner by the world size and fbgemm's row-wise Adagrad is the torch backend's,
  so the sharded run computes what a plain one-process run with the same table optimizer does: the same validation
  metrics (to 1e-6) and weights (to 1e-6: float summation order only).
* two-tower: its in-batch softmax takes each rank's share of the batch as the negatives under any DDP, so its
  reference is a plain DDP run (torch backend) on 2 processes, which the sharded run matches to 1e-5.
* the checkpoint holds plain tables: it tests and exports in one process with torchrec and fbgemm made unimportable;
  ``--resume auto`` from the epoch-1 checkpoint ends bit-identical (``torch.equal``) to the uninterrupted run, the
  gathered row-wise Adagrad state included.

All the launches start together (the fixture) so that the test pays about one launch's wall time on 2 cores."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.scale.test_distributed import REPO, _env

OVERLAY = REPO / "recipes" / "overlays" / "strategy" / "torchrec.yaml"
TIMEOUT = 300


def _recipe(tmp: Path, model: str) -> Path:
    init = {"embedding_dim": 16, "lr": 0.05, "embedding_optimizer": "rowwise_adagrad"}
    if model == "two_tower":
        init["tower_layers"] = [16]
    recipe = {"seed_everything": 7, "model": {"class_path": model, "init_args": init},
              "data": {"class_path": "interactions",
                       "init_args": {"dataset": "synthetic_interactions", "split": "loo", "batch_size": 64,
                                     "eval_batch_size": 64}},
              "trainer": {"max_epochs": 2, "accelerator": "cpu", "precision": "32-true", "deterministic": True,
                          "enable_progress_bar": False}}
    path = tmp / f"tiny_{model}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _launch(tmp: Path, name: str, recipe: Path, *extra: str, sharded: bool = True) -> tuple[subprocess.Popen, Path]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "zoo.cli", "fit", "--config", str(recipe)]
    cmd += ["--config", str(OVERLAY)] if sharded else ["--trainer.strategy", "ddp"]
    cmd += ["--trainer.devices", "2", "--trainer.default_root_dir", str(tmp / name), *extra]
    log = tmp / f"{name}.log"
    with open(log, "w") as fh:
        return subprocess.Popen(cmd, env=_env(), stdout=fh, stderr=subprocess.STDOUT, cwd=tmp), log


def _wait(proc: subprocess.Popen, log: Path) -> None:
    try:
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log.read_text()[-4000:]


def _run_file(root: Path, name: str) -> Path:
    found = sorted(root.rglob(name))  # the run's version_N (torchrun's two ranks may leave an empty one beside)
    assert found, f"no {name} under {root}"
    return found[-1]


def _val_metrics(root: Path) -> list[dict[str, float]]:
    with open(_run_file(root, "metrics.csv"), newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/ndcg@10")]
    return [{k: float(v) for k, v in r.items() if k.startswith("val/") and k != "val/loss" and v} for r in rows]


def _ckpt(root: Path) -> dict:
    return torch.load(_run_file(root, "last.ckpt"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torchrec")
    bpr, tt = _recipe(tmp, "bpr"), _recipe(tmp, "two_tower")
    procs = {"bpr": _launch(tmp, "bpr", bpr),
             "bpr_epoch1": _launch(tmp, "bpr_resumed", bpr, "--trainer.max_epochs", "1"),
             "tt": _launch(tmp, "tt", tt), "tt_ddp": _launch(tmp, "tt_ddp", tt, sharded=False)}
    # meanwhile the one-process reference: plain BPR, torch backend, the same table optimizer and global batch
    from zoo.cli import main

    try:
        assert main(["fit", "--config", str(bpr), "--trainer.default_root_dir", str(tmp / "bpr_one")]) == 0
    finally:
        for proc, log in procs.values():
            _wait(proc, log)
    return tmp, bpr


@pytest.mark.distributed
@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_sharded_bpr_matches_one_process_and_its_checkpoint_serves_without_torchrec(runs, monkeypatch, tmp_path):
    tmp, recipe = runs
    two, one = _val_metrics(tmp / "bpr"), _val_metrics(tmp / "bpr_one")
    assert len(two) == len(one) == 2
    for a, b in zip(two, one, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), key
    sharded, plain = _ckpt(tmp / "bpr"), _ckpt(tmp / "bpr_one")
    assert sharded["state_dict"].keys() == plain["state_dict"].keys() == {"user_emb.weight", "item_emb.weight"}
    for key, value in plain["state_dict"].items():
        assert torch.allclose(sharded["state_dict"][key], value, rtol=0, atol=1e-6), key

    # one plain process, torchrec and fbgemm unimportable: zoo test and zoo export read the sharded run's checkpoint
    monkeypatch.setitem(sys.modules, "torchrec", None)
    monkeypatch.setitem(sys.modules, "fbgemm_gpu", None)
    monkeypatch.chdir(tmp_path)
    from zoo.cli import main

    ckpt = _run_file(tmp / "bpr", "last.ckpt")
    assert main(["test", "--config", str(recipe), "--ckpt_path", str(ckpt)]) == 0
    assert main(["export", str(ckpt.parent.parent), "--format", "safetensors", "--out", str(tmp_path / "exp")]) == 0
    from zoo.export import load_predictor

    got = load_predictor(tmp_path / "exp").predict([{"user": "u0"}])
    assert len(got[0]["items"]) == 10


@pytest.mark.distributed
@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_resume_auto_from_a_sharded_checkpoint_is_bit_identical(runs):
    tmp, recipe = runs
    assert _ckpt(tmp / "bpr_resumed")["global_step"] < _ckpt(tmp / "bpr")["global_step"]
    proc, log = _launch(tmp, "bpr_resumed", recipe, "--resume", "auto")
    _wait(proc, log)
    assert "resuming" in log.read_text()
    resumed, straight = _ckpt(tmp / "bpr_resumed"), _ckpt(tmp / "bpr")
    assert resumed["global_step"] == straight["global_step"]
    for key, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    states = straight["optimizer_states"][0]["fused"]["states"]
    assert states and all(torch.equal(resumed["optimizer_states"][0]["fused"]["states"][k], v)
                          for k, v in states.items())


@pytest.mark.distributed
@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_sharded_two_tower_matches_plain_ddp(runs):
    tmp, _ = runs
    sharded, ddp = _val_metrics(tmp / "tt"), _val_metrics(tmp / "tt_ddp")
    assert len(sharded) == len(ddp) == 2
    for a, b in zip(sharded, ddp, strict=True):
        for key in b:
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    a, b = _ckpt(tmp / "tt")["state_dict"], _ckpt(tmp / "tt_ddp")["state_dict"]
    assert a.keys() == b.keys() and "user_tower.0.weight" in a
    for key in b:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-5), key


def test_torchrec_backend_without_the_strategy_names_the_overlay(tmp_path, monkeypatch, capsys):
    from zoo.tasks.recsys import BPR
    from zoo.tasks.recsys.errors import RecsysModelError

    with pytest.raises(RecsysModelError, match="strategy/torchrec.yaml"):
        BPR(num_users=4, num_items=4, embedding_dim=8, embedding_backend="torchrec").resolve_embedding_backend()
    # what the strategy refuses before any collective (zoo.tasks.recsys.tables._check_torchrec)
    from zoo.tasks.recsys import LightGCN

    with pytest.raises(RecsysModelError, match="no ID table read by lookups alone.*strategy/ddp.yaml"):
        LightGCN(num_users=4, num_items=4)._check_torchrec(True, [])
    with pytest.raises(RecsysModelError, match="weight_decay 0"):
        bpr = BPR(num_users=4, num_items=4, embedding_dim=8, weight_decay=0.1)
        bpr._check_torchrec(True, bpr.sparse_tables())
    with pytest.raises(RecsysModelError, match="embedding_backend: fbgemm asks otherwise"):
        bpr = BPR(num_users=4, num_items=4, embedding_dim=8, embedding_backend="fbgemm")
        bpr._check_torchrec(True, bpr.sparse_tables())
    monkeypatch.chdir(tmp_path)
    from zoo.cli import main

    code = main(["fit", "--config", str(_recipe(tmp_path, "bpr")), "--model.init_args.embedding_backend", "torchrec",
                 "--trainer.fast_dev_run", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "add --config recipes/overlays/strategy/torchrec.yaml" in err and "Traceback" not in err
