"""``zoo serve --engine``: the in-process engine answers what the LitServe engine answers (text, image and BPR
exports, good and bad requests, ``/predict/batch``), batches what arrives while a batch runs, and the engine
``auto`` picks follows the documented rule. The HTTP, auth and drain tests of test_serve.py run on the in-process
engine (the default for one worker); one test here runs the LitServe engine as a real server."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from tests.serve.test_serve import KEY, _call, _free_port, _png, kill_group, start_server


def _api(folder):
    from zoo.inference import read_export
    from zoo.serve.api import PredictAPI

    api = PredictAPI(export=read_export(folder), backend=None, calibration="temperature", threads=1,
                     max_batch_size=8)
    api.setup("cpu")
    return api


def _litserve_answers(api, requests):
    """What the LitServe engine's worker does with one dynamic batch: decode each, predict, encode each."""
    out = api.unbatch(api.predict(api.batch([api.decode_request(r) for r in requests])))
    answers = []
    for o in out:
        r = api.encode_response(o)
        answers.append((r.status_code, json.loads(r.body)) if hasattr(r, "status_code") else (200, r))
    return answers


def _inprocess_answers(api, requests):
    from zoo.serve.inprocess import InProcessServer

    server = InProcessServer(api, max_batch_size=8, timeout=30, max_bytes=1 << 20, model_metadata={})
    return [(status, json.loads(body)) for status, body in server._answer(requests)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from zoo.export import export_model
    from zoo.registry import MODELS
    from zoo.tasks.image import tiny_case
    from zoo.tasks.text.tiny import tiny_text_case

    tmp = tmp_path_factory.mktemp("engines")
    model, data = tiny_text_case(tmp)
    model.bind_data(data)
    export_model(model, data, "onnx", tmp / "text")
    texts = [r["text"] for r in data.splits["test"].rows]
    model, data = tiny_case(tmp)
    export_model(model, data, "onnx", tmp / "image")
    rec, rdata = MODELS.entry("bpr").meta["tiny_case"](tmp)
    export_model(rec, rdata, "onnx", tmp / "bpr")
    return {"text": (tmp / "text", texts), "image": tmp / "image", "bpr": (tmp / "bpr", list(rdata.user_ids))}


@pytest.mark.slow
def test_inprocess_answers_equal_litserve_on_text_image_and_bpr(exports):
    folder, texts = exports["text"]
    api = _api(folder)
    requests = [{"text": t, "top_k": 1 + i % 2} for i, t in enumerate(texts[:6])] + [
        {"text": ""}, {"txt": "x"}, {"zoo_batch": {"inputs": [texts[0], texts[1]]}},
        {"zoo_batch": {"inputs": ["fine", "  "]}}]
    got, want = _inprocess_answers(api, requests), _litserve_answers(api, requests)
    assert got == want
    assert [s for s, _ in got] == [200] * 6 + [400, 400, 200, 400]
    assert got[-1][1]["field"] == "inputs[1].text" and len(got[-2][1]["outputs"]) == 2

    api = _api(exports["image"])
    good = {"image": base64.b64encode(_png()).decode()}
    requests = [good, {**good, "top_k": 2}, {"image": "bm90IGFuIGltYWdl"}, {"image": "%%"}, {"no": 1}]
    got = _inprocess_answers(api, requests)
    assert got == _litserve_answers(api, requests)
    assert [s for s, _ in got] == [200, 200, 400, 400, 400] and len(got[1][1]["probabilities"]) == 2

    folder, users = exports["bpr"]
    api = _api(folder)
    requests = [{"user": u, "top_k": 1 + i % 3} for i, u in enumerate(users[:5])] + [
        {"user": "nobody"}, {"items": ["1"]}, {"zoo_batch": [{"user": users[0]}, {"user": users[1]}]}]
    got = _inprocess_answers(api, requests)
    assert got == _litserve_answers(api, requests)
    assert [s for s, _ in got] == [200] * 5 + [404, 422, 200]


@pytest.mark.parametrize("parallel", [1, 2])
def test_batches_are_what_arrived_while_a_model_thread_was_busy(parallel):
    from zoo.serve.inprocess import MicroBatcher

    running, peak, lock = [0], [0], threading.Lock()

    def handle(items):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)  # the batches run while the others arrive
        with lock:
            running[0] -= 1
        return [x * 10 for x in items]

    async def scenario():
        batcher = MicroBatcher(handle, max_batch_size=4, parallel=parallel)
        batcher.BATCH_SECONDS = 60.0  # no cut by time here (test_a_slow_model_gets_batches_cut_to_its_speed)
        batcher.start()
        first = []
        for i in range(parallel):  # each lone request starts a batch at once, on a free thread
            first.append(asyncio.ensure_future(batcher.submit(i)))
            await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(parallel, parallel + 6)]
        answers = await asyncio.gather(*first, *rest)
        await batcher.stop()
        return answers, batcher.sizes

    answers, got = asyncio.run(scenario())
    assert answers == [i * 10 for i in range(parallel + 6)]
    # one thread: a lone request at once, then the six that came during it as 4 + 2; two threads: two lone ones
    # at once (both threads busy together), then 4 + 2
    assert peak[0] == parallel
    assert got == ({1: 1, 4: 1, 2: 1} if parallel == 1 else {1: 2, 4: 1, 2: 1}), got


def test_a_slow_model_gets_batches_cut_to_its_speed():
    """A model whose cost per input does not fall with the batch (a text encoder on CPU) gets batches of about
    BATCH_SECONDS of work, so the requests behind a batch wait less; a fast one keeps max_batch_size."""
    from zoo.serve.inprocess import MicroBatcher

    def handle(items):
        time.sleep(0.02 * len(items))
        return items

    async def scenario():
        batcher = MicroBatcher(handle, max_batch_size=16, parallel=1)
        assert batcher.cap() == 16  # nothing measured yet
        batcher.start()
        await batcher.submit(0)  # measures about 0.02 s per input
        answers = await asyncio.gather(*[batcher.submit(i) for i in range(12)])
        await batcher.stop()
        return answers, batcher.sizes

    answers, got = asyncio.run(scenario())
    assert answers == list(range(12))
    assert max(got) <= 2 and sum(k * v for k, v in got.items()) == 13, got  # 0.05 s / >= 0.02 s per input


@pytest.mark.slow
def test_engine_rule_and_refusals(exports, capsys):
    from zoo.cli import main
    from zoo.serve import build_server, choose_engine

    assert choose_engine("auto", 1) == "inprocess" and choose_engine("auto", 2) == "litserve"
    assert choose_engine("litserve", 1) == "litserve"
    server = build_server(exports["image"], threads=1)
    batching = server.model_metadata["batching"]
    assert server.engine == "inprocess" and batching["engine"] == "inprocess"
    assert server.batcher.parallel == batching["model_threads"] == (2 if (os.cpu_count() or 1) >= 2 else 1)
    assert type(build_server(exports["image"], threads=1, engine="litserve")).__name__ == "LitServer"
    for route in ("/predict", "/info", "/health"):  # the app other modules (the page) add routes to
        assert any(getattr(r, "path", None) == route for r in server.app.routes), route
    try:
        code = main(["serve", str(exports["image"]), "--engine", "inprocess", "--workers", "2"])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "--engine litserve" in err and "Traceback" not in err, err[-2000:]


@pytest.mark.slow
def test_a_serving_process_runs_torch_on_one_thread_and_onnx_runtime_without_spinning(exports, monkeypatch):
    import torch

    from zoo.inference import OnnxRunner

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(OnnxRunner, "allow_spinning", True)
    _api(exports["image"])  # a caller's own process (this test) is left as it was
    assert calls == [] and OnnxRunner.allow_spinning
    from zoo.serve import build_server

    build_server(exports["image"], threads=1).api.setup("cpu")
    assert calls == [1] and not OnnxRunner.allow_spinning


@pytest.mark.subprocess
def test_litserve_engine_still_serves_authorises_and_drains(exports, tmp_path):
    folder, texts = exports["text"]
    port = _free_port()
    proc = start_server(folder, port, tmp_path, "--engine", "litserve", "--threads", "1", "--api-key", KEY,
                        "--drain-timeout", "10")
    try:
        status, answer = _call(port, "/predict", {"text": texts[0]})
        api = _api(folder)
        assert status == 200 and answer == _inprocess_answers(api, [{"text": texts[0]}])[0][1]
        assert _call(port, "/predict", {"text": texts[0]}, key=None)[0] == 401
        assert _call(port, "/info")[1]["model"]["batching"]["engine"] == "litserve"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        output = proc.stdout.read().decode()
        assert "Traceback" not in output, output[-3000:]
    except subprocess.TimeoutExpired:
        pytest.fail("zoo serve --engine litserve did not stop within 30 s of SIGTERM")
    finally:
        kill_group(proc)
