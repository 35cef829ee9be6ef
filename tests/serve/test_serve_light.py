"""Serving an ONNX export never imports zoo's training stack: neither the ``zoo serve`` process that reads the
folder and builds the server, nor the worker that loads and runs it (a worker of a small model would otherwise
carry Lightning, torchmetrics and zoo's tasks in memory for nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.subprocess
def test_an_onnx_export_is_served_without_lightning(tmp_path):
    from zoo.export import export_model
    from zoo.tasks.image import tiny_case

    model, data = tiny_case(tmp_path)
    export_model(model, data, "onnx", tmp_path / "img")
    script = textwrap.dedent(f"""
        import sys
        from zoo.inference import read_export
        import zoo.serve
        from zoo.serve.api import PredictAPI
        zoo.serve._run = lambda server, host, port: None  # everything zoo serve does but listening
        zoo.serve.serve({str(tmp_path / "img")!r}, threads=1)
        api = PredictAPI(export=read_export({str(tmp_path / "img")!r}), backend=None, calibration="temperature",
                         threads=1, max_batch_size=2)
        api.setup("cpu")
        import numpy as np
        answer = api.predict(api.decode_request({{"image": np.zeros((24, 24, 3), dtype="uint8")}}))
        assert "label" in answer, answer
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning",
                                                                       "torchmetrics") or m.startswith("zoo.tasks"))
        print("LOADED", loaded)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED []" in out.stdout, out.stdout[-2000:]
