"""Distributed correctness on CPU (gloo): a 2-process DDP run of every registered model's tiny case, and a
two-"node" torchrun launch of recipes/vision/digits_tiny.yaml that must train the same weights as one process.

Each test starts real processes (torchrun), so each pays the imports of two or four Python processes."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.common.helpers import quiet_trainer
from zoo.callbacks.prediction_writer import PredictionWriter, indexed_rows, merge_indexed_rows
from zoo.contract import SAMPLE_KEY
from zoo.registry import MODELS

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 240


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check(proc: subprocess.CompletedProcess | subprocess.Popen, output: str) -> None:
    assert proc.returncode == 0, output[-4000:]


def _same_rows(a: list[dict[str, str]], b: list[dict[str, str]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            try:
                assert math.isclose(float(x[key]), float(y[key]), rel_tol=1e-4, abs_tol=1e-5), (key, x, y)
            except ValueError:
                assert x[key] == y[key], (key, x, y)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- pure helpers of the prediction writer --------------------------------------------------------------
def test_prediction_rows_merge_in_dataset_order_without_duplicates():
    # rank 0 got samples 0, 2, 4; rank 1 got 1, 3 and (padding) 0 again
    rank0 = indexed_rows([[{"id": "a"}, {"id": "c"}], [{"id": "e"}]], [[0, 2], [4]])
    rank1 = indexed_rows([[{"id": "b"}, {"id": "d"}], [{"id": "a"}]], [[1, 3], [0]])
    assert [r["id"] for r in merge_indexed_rows(rank0 + rank1)] == ["a", "b", "c", "d", "e"]
    # several rows per sample (a recommender's top-k) name their sample's position in the batch
    r0 = indexed_rows([[{"u": "a", "r": 1, SAMPLE_KEY: 0}, {"u": "a", "r": 2, SAMPLE_KEY: 0},
                        {"u": "c", "r": 1, SAMPLE_KEY: 1}]], [[0, 2]])
    r1 = indexed_rows([[{"u": "b", "r": 1, SAMPLE_KEY: 0}, {"u": "b", "r": 2, SAMPLE_KEY: 0}]], [[1]])
    merged = merge_indexed_rows(r1 + r0)
    assert [(r["u"], r["r"]) for r in merged] == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1)]
    assert all(SAMPLE_KEY not in r for r in merged)
    # without indices the rank order is kept
    assert [r["id"] for r in merge_indexed_rows(indexed_rows([[{"id": "z"}, {"id": "y"}]], None))] == ["z", "y"]


# -- 2-process DDP of every registered model ------------------------------------------------------------
@pytest.mark.distributed
@pytest.mark.subprocess
@pytest.mark.timeout(600)
@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS.list())
def test_ddp_two_processes_match_one_process(name, tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           "-m", "tests.common.ddp_worker", "--case", name, "--out", str(out)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    _check(proc, proc.stdout + proc.stderr)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # epoch metrics are synced by torchmetrics: both ranks log the same values
    for key, value in ranks[0]["fit"].items():
        if key.startswith("val/") and key != "val/loss":
            assert ranks[1]["fit"][key] == pytest.approx(value, abs=1e-6), key
    assert ranks[0]["test"] == pytest.approx(ranks[1]["test"], abs=1e-6)

    # the same weights evaluated in one process: the same test metrics (no padded duplicates) ...
    model, data = MODELS.entry(name).meta["tiny_case"](tmp_path / "single")
    single = quiet_trainer().test(model, data, ckpt_path=str(out / "model.ckpt"), verbose=False)[0]
    for key, value in single.items():
        if key.endswith("/loss"):  # a mean of per-rank means: weighted differently when shards differ in size
            continue
        assert ranks[0]["test"][key] == pytest.approx(value, abs=1e-5), (
            f"{name}: DDP {key} differs from one process on the same weights; does the datamodule give its "
            "val/test loaders zoo.data.distributed.eval_sampler (an unpadded shard per rank)?")
    # ... and the same prediction file: every row once, in dataset order, gathered from both ranks
    quiet_trainer(callbacks=[PredictionWriter(str(tmp_path / "single.csv"))]).predict(
        model, data, ckpt_path=str(out / "model.ckpt"), return_predictions=False)
    _same_rows(_read_csv(out / "predictions.csv"), _read_csv(tmp_path / "single.csv"))


# -- two "nodes" on localhost ---------------------------------------------------------------------------
def _last_weights(root: Path) -> dict[str, torch.Tensor]:
    ckpts = sorted(root.rglob("last.ckpt"))
    assert ckpts, f"no last.ckpt under {root}"
    return torch.load(ckpts[-1], map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.distributed
@pytest.mark.subprocess
@pytest.mark.timeout(900)
@pytest.mark.slow
def test_two_node_torchrun_matches_single_process(tmp_path):
    recipe = REPO / "recipes" / "vision" / "digits_tiny.yaml"
    port = _free_port()
    procs = []
    for node_rank in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--node_rank", str(node_rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
               "-m", "zoo.cli", "fit", "--config", str(recipe), "--trainer.strategy", "ddp",
               "--trainer.num_nodes", "2", "--trainer.devices", "1",
               "--trainer.enable_progress_bar", "false",
               "--data.init_args.batch_size", "16",  # per process: global batch 2 x 16 = the recipe's 32
               # fp32 on both sides: the recipe's precision auto is bf16 on a bf16 CPU, whose rounding differs
               # between 2 x 16 and 1 x 32 rows far beyond the tolerance this test holds DDP to
               "--trainer.precision", "32-true",
               "--trainer.default_root_dir", str(tmp_path / "two_nodes")]
        log = open(tmp_path / f"node{node_rank}.log", "w")
        procs.append((subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path), log))
    # meanwhile, the one-process reference: same recipe, same global batch, same DistributedSampler order
    # (DDP with world size 1)
    from zoo.cli import main

    saved_env = dict(os.environ)  # Lightning sets MASTER_ADDR / MASTER_PORT / ranks in this process
    try:
        assert main(["fit", "--config", str(recipe), "--trainer.strategy", "ddp", "--trainer.devices", "1",
                     "--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false",
                     "--trainer.default_root_dir",
                     str(tmp_path / "one")]) == 0
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved_env)
        for proc, log in procs:
            try:
                proc.wait(timeout=TIMEOUT)
            finally:
                log.close()
                if proc.poll() is None:
                    proc.kill()
    for node_rank, (proc, _) in enumerate(procs):
        _check(proc, (tmp_path / f"node{node_rank}.log").read_text())
    two, one = _last_weights(tmp_path / "two_nodes"), _last_weights(tmp_path / "one")
    assert two.keys() == one.keys()
    # Adam divides each element's step by its running gradient RMS, so an element whose gradient is ~0 takes a
    # step whose sign rounding decides: a handful of such elements may differ by a few 1e-5 between a 2-process
    # and a 1-process run (seen with fused AdamW). Wrong gradient averaging or batch splitting moves every
    # element by ~1e-3 or more.
    tight = total = 0
    for key in one:
        # the temperature is fitted after a one-process fit; a multi-process fit leaves it to `zoo test`
        if one[key].is_floating_point() and key != "temperature":
            assert torch.allclose(two[key], one[key], rtol=1e-4, atol=1e-4), key
            tight += int((~torch.isclose(two[key], one[key], rtol=1e-4, atol=1e-6)).sum())
            total += one[key].numel()
    assert tight <= max(1, total // 1000), f"{tight} of {total} weights differ by more than 1e-6"
    # and it did train: weights moved away from a fresh model's
    from zoo.tasks.image import ImageClassifier

    torch.manual_seed(42)
    initial = ImageClassifier(backbone="small_cnn", backbone_kwargs={"width": 8, "norm": "group"}, num_classes=10,
                              in_channels=1).state_dict()
    moved = [k for k in initial if initial[k].is_floating_point() and not torch.allclose(initial[k], one[k])]
    assert moved
