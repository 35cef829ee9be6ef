"""The TorchRec install that ``make venv`` makes (torchrec + fbgemm-gpu-cpu, --no-deps) shards and trains: BPR's
tables under DistributedModelParallel with the planner's plan, on 2 gloo CPU processes
(benchmarks/bench_recsys_torchrec.py). It checks the environment, not a zoo model: zoo's recommenders do not
train through TorchRec yet (docs/recsys.md, "Beyond one device")."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.scale.test_distributed import REPO, _env, _free_port


@pytest.mark.distributed
def test_torchrec_shards_bpr_tables_over_two_gloo_processes_and_learns():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_recsys_torchrec", "--port", str(_free_port())],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = {int(r): (float(a), float(b)) for r, a, b in re.findall(r"RANK (\d) LOSS (\S+) (\S+)", proc.stdout)}
    assert set(losses) == {0, 1}, proc.stdout
    assert "row_wise" in proc.stdout or "ROW_WISE" in proc.stdout  # the planner's plan is printed: rows split
    for first, last in losses.values():
        assert last < first  # the fused SGD in backward moved the sharded rows the right way
