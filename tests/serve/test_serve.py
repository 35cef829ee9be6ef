"""zoo serve: a real server process on a free localhost port (one start for the module), real HTTP requests
(single, concurrent, batch) answered as ``zoo predict`` answers, bad requests refused with 4xx JSON naming the
field, and a clean stop (of a second server, started by that test alone). Bad inputs of the other families (an
image that does not decode, an unknown user) go through the same LitAPI code in-process."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.common.helpers import quiet_trainer

ROOT = Path(__file__).resolve().parents[2]
KEY = "s3cret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(port, path, body=None, key=KEY, ctype="application/json", timeout=60):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"Content-Type": ctype, **({"X-API-Key": key} if key else {})}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null") if path != "/health" else r.read().decode()
    except urllib.error.HTTPError as err:
        text = err.read()
        return err.code, json.loads(text) if text.startswith(b"{") else text.decode()


def start_server(folder: Path, port: int, cwd: Path, *args: str, paths: tuple[Path, ...] = ()) -> subprocess.Popen:
    """``zoo serve FOLDER`` as a real process in its own process group (``paths`` join the repository on its
    PYTHONPATH), returned once ``/health`` answers 200."""
    pythonpath = os.pathsep.join(str(p) for p in (ROOT, *paths))
    proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", str(folder), "--port", str(port), *args],
                            cwd=cwd, env={**os.environ, "PYTHONPATH": pythonpath}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"zoo serve exited: {proc.stdout.read().decode()[-3000:]}")
        try:
            if _call(port, "/health", key=None, timeout=2)[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("zoo serve did not become healthy in 120 s")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny text classifier exported to onnx, with what ``zoo predict`` answers on its test texts."""
    from zoo.export import export_model
    from zoo.tasks.text.tiny import tiny_text_case

    tmp = tmp_path_factory.mktemp("serve")
    model, data = tiny_text_case(tmp)
    model.bind_data(data)
    export_model(model, data, "onnx", tmp / "text")
    rows = [r for b in quiet_trainer().predict(model, datamodule=data) for r in b]
    texts = [r["text"] for r in data.splits["test"].rows]
    return {"folder": tmp / "text", "texts": texts, "rows": rows, "classes": model.class_names}


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the server's whole process group: workers outlive a main process that died."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(exported):
    port = _free_port()
    folder = exported["folder"]
    proc = start_server(folder, port, folder.parent, "--max-batch-size", "8", "--batch-timeout", "0.02",
                        "--api-key", KEY, "--threads", "1", "--max-body-mb", "1")
    try:
        yield {**exported, "port": port, "proc": proc}
    finally:
        kill_group(proc)


@pytest.mark.subprocess
def test_answers_equal_zoo_predict_single_concurrent_and_batch(server):
    port, texts, rows = server["port"], server["texts"], server["rows"]
    status, first = _call(port, "/predict", {"text": texts[0], "top_k": 2})
    assert status == 200 and first["label"] == rows[0]["label"] and len(first["probabilities"]) == 2
    with ThreadPoolExecutor(16) as pool:  # concurrent requests share dynamic batches; each gets its own answer
        answers = list(pool.map(lambda t: _call(port, "/predict", {"text": t}), texts))
    assert all(s == 200 for s, _ in answers)
    assert [a["label"] for _, a in answers] == [r["label"] for r in rows]
    diff = max(abs(a["confidence"] - r["confidence"]) for (_, a), r in zip(answers, rows))
    print(f"served vs zoo predict: max |confidence difference| {diff:.2e} over {len(rows)} texts")
    assert diff <= 1e-5
    status, batch = _call(port, "/predict/batch", {"inputs": texts[:5]})
    assert status == 200 and [b["label"] for b in batch["outputs"]] == [r["label"] for r in rows[:5]]
    status, info = _call(port, "/info")
    assert status == 200 and info["model"]["task"] == "text_classification"
    assert info["model"]["labels"] == server["classes"] and info["model"]["verification"]["passed"]
    assert _call(port, "/health", key=None)[0] == 200
    # a multipart form (curl -F text=... / -F image=@file.png) is read as the JSON fields
    form = (f'--zb\r\nContent-Disposition: form-data; name="text"\r\n\r\n{texts[2]}\r\n--zb--\r\n').encode()
    assert _call(port, "/predict", form, ctype="multipart/form-data; boundary=zb")[1]["label"] == rows[2]["label"]
    # a curl -d body (form content type) is read as JSON
    assert _call(port, "/predict", json.dumps({"text": texts[1]}).encode(),
                 ctype="application/x-www-form-urlencoded")[1]["label"] == rows[1]["label"]


@pytest.mark.subprocess
@pytest.mark.parametrize("body, status, field", [
    ({"txt": "hello"}, 400, "text"),                       # missing field
    ({"text": 42}, 400, "text"),                           # wrong type
    ({"text": "   "}, 400, "text"),                        # empty text
    ({"text": "ok", "top_k": 0}, 400, "top_k"),
    (b"{not json", 400, "body"),
    (b"x" * (2 * 1024 * 1024), 413, "body"),               # over --max-body-mb 1
])
def test_bad_requests_get_4xx_naming_the_field(server, body, status, field):
    got, answer = _call(server["port"], "/predict", body)
    assert got == status and answer["field"] == field and field in answer["error"], answer


@pytest.mark.subprocess
def test_bad_request_in_a_batch_does_not_spoil_the_others_and_key_is_required(server):
    port, texts, rows = server["port"], server["texts"], server["rows"]
    bodies = [{"text": t} if i % 2 else {"text": ""} for i, t in enumerate(texts[:8])]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: _call(port, "/predict", b), bodies))
    for i, (status, answer) in enumerate(answers):
        assert (status, answer.get("label")) == ((200, rows[i]["label"]) if i % 2 else (400, None))
    status, answer = _call(port, "/predict/batch", {"inputs": ["fine", ""]})
    assert status == 400 and answer["field"] == "inputs[1].text"
    assert _call(port, "/predict", {"text": "hi"}, key="wrong")[0] == 401
    for path in ("/info", "/docs", "/openapi.json", "/predict/batch"):  # every route but the liveness probe
        assert _call(port, path, key=None)[0] == 401, path
    assert _call(port, "/health", key=None) == (200, "ok")
    assert _call(port, "/predict", {"text": "hi"})[0] == 200  # and it keeps serving


@pytest.mark.subprocess
def test_sigterm_mid_burst_answers_every_accepted_request_then_exits_0(exported, tmp_path):
    """Its own server, so that stopping it leaves the module's server to the other tests, in any order. Batches
    wait up to 1 s to fill, so the burst is still in flight when SIGTERM (what systemd / docker send, to the main
    process only) arrives; every accepted request is answered, the port then refuses, and the process exits 0."""
    port = _free_port()
    proc = start_server(exported["folder"], port, tmp_path, "--threads", "1", "--max-batch-size", "64",
                        "--batch-timeout", "1", "--drain-timeout", "10", "--api-key", KEY)
    try:
        with ThreadPoolExecutor(24) as pool:
            burst = [pool.submit(_call, port, "/predict", {"text": t}) for t in (exported["texts"] * 3)[:24]]
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            answers = [f.result() for f in burst]
        assert [status for status, _ in answers] == [200] * len(burst), answers
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("zoo serve did not stop within 20 s of SIGTERM (drain timeout 10 s)")
        print(f"drained and exited {time.monotonic() - stopped:.1f} s after SIGTERM")
        output = proc.stdout.read().decode()
        assert code == 0, output[-3000:]
        assert f"zoo: listening on http://127.0.0.1:{port} (TextClassifier, onnx, 1 worker)" in output, output
        assert "Traceback" not in output and "Forcibly" not in output, output[-3000:]
        deadline, left = time.time() + 15, ["?"]
        while left and time.time() < deadline:  # multiprocessing's resource tracker exits a moment after its parent
            left = subprocess.run(["pgrep", "-a", "-g", str(proc.pid)], capture_output=True,
                                  text=True).stdout.splitlines()
            time.sleep(0.3)
        assert not left, f"processes left behind: {left}"
        with pytest.raises(OSError):
            _call(port, "/health", key=None, timeout=2)
    finally:
        kill_group(proc)


def _api(cls, folder):
    from zoo.inference import read_export
    from zoo.serve.api import PredictAPI

    api = PredictAPI(export=read_export(folder), backend=None, calibration="temperature", threads=1, max_batch_size=4)
    api.setup("cpu")
    return api


def test_image_and_recommender_bad_inputs_are_4xx_without_spoiling_the_batch(tmp_path):
    from zoo.export import export_model
    from zoo.registry import MODELS
    from zoo.tasks.image import tiny_case

    model, data = tiny_case(tmp_path)
    export_model(model, data, "onnx", tmp_path / "img")
    api = _api(None, tmp_path / "img")
    good = {"image": base64.b64encode(_png()).decode()}
    out = api.predict(api.batch([api.decode_request(good), api.decode_request({"image": "bm90IGFuIGltYWdl"}),
                                 api.decode_request({"image": "%%"})]))
    responses = [api.encode_response(o) for o in api.unbatch(out)]
    assert responses[0]["label"] in model.class_names
    assert [r.status_code for r in responses[1:]] == [400, 400]
    assert [json.loads(r.body)["field"] for r in responses[1:]] == ["image", "image"]
    assert "does not decode" in json.loads(responses[1].body)["error"]

    rec, rdata = MODELS.entry("bpr").meta["tiny_case"](tmp_path)
    export_model(rec, rdata, "onnx", tmp_path / "bpr")
    api = _api(None, tmp_path / "bpr")
    user = rdata.user_ids[0]
    out = api.unbatch(api.predict(api.batch([api.decode_request({"user": "nobody"}), api.decode_request({"user": user}),
                                             api.decode_request({"items": ["1"]})])))
    unknown, known, items = (api.encode_response(o) for o in out)
    assert unknown.status_code == 404 and json.loads(unknown.body)["field"] == "user"
    assert known["user"] == user and len(known["items"]) == rec.top_k
    assert items.status_code == 422 and "known users only" in json.loads(items.body)["error"]


def _png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.arange(24 * 24 * 3) % 255).astype("uint8").reshape(24, 24, 3)).save(buf, format="PNG")
    return buf.getvalue()
