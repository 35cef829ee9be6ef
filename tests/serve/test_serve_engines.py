"""``zoo serve --engine``: the in-process engine answers what the LitServe engine answers (text, image and BPR
exports, good and bad requests, ``/predict/batch``), batches what arrives while a batch runs, and the engine
``auto`` picks follows the documented rule. The HTTP, auth and drain tests of test_serve.py run on the in-process
engine (the default for one worker); one test here runs the LitServe engine as a real server."""

from __future__ import annotations

import asyncio
import base64
import json
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

    server = InProcessServer(api, max_batch_size=8, batch_timeout=0.0, timeout=30, max_bytes=1 << 20,
                             model_metadata={})
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


def test_batches_are_what_arrived_while_the_last_one_ran():
    from zoo.serve.inprocess import MicroBatcher

    started = threading.Event()

    def handle(items):
        started.set()
        time.sleep(0.2)  # the first batch runs while the others arrive
        return [x * 10 for x in items]

    async def scenario():
        batcher = MicroBatcher(handle, max_batch_size=4)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(0))
        while not started.is_set():
            await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 7)]
        answers = await asyncio.gather(first, *rest)
        await batcher.stop()
        return answers, batcher.sizes

    answers, sizes = asyncio.run(scenario())
    assert answers == [i * 10 for i in range(7)]
    # a lone request is answered at once (no wait for company); the six that came during it: 4 + 2
    assert sizes == {1: 1, 4: 1, 2: 1}, sizes


@pytest.mark.slow
def test_engine_rule_and_refusals(exports, capsys):
    from zoo.cli import main
    from zoo.serve import build_server, choose_engine

    assert choose_engine("auto", 1) == "inprocess" and choose_engine("auto", 2) == "litserve"
    assert choose_engine("litserve", 1) == "litserve"
    server = build_server(exports["image"], threads=1)
    assert server.engine == "inprocess" and server.model_metadata["batching"]["engine"] == "inprocess"
    assert type(build_server(exports["image"], threads=1, engine="litserve")).__name__ == "LitServer"
    for route in ("/predict", "/info", "/health"):  # the app other modules (the page) add routes to
        assert any(getattr(r, "path", None) == route for r in server.app.routes), route
    try:
        code = main(["serve", str(exports["image"]), "--engine", "inprocess", "--workers", "2"])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "--engine litserve" in err and "Traceback" not in err, err[-2000:]


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
