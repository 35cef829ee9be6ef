"""The export / serving family contract is open: a family defined outside zoo (tests/export/toy_family.py) is
exported, verified against its eager model and served — in-process and by a real ``zoo serve`` that finds it
through the ``zoo.families`` entry-point group — with no edit under zoo/. And every model zoo registers names a
family zoo registers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.export import toy_family
from zoo.export import ExportError, export_model, load_predictor
from zoo.export.formats import FORMATS

ROOT = Path(__file__).resolve().parents[2]
VECTORS = [[1.0, -2.0, 0.5, 3.0], [0, 0, 0, 1], [-1, 2, -3, 0.25]]


def _toy():
    torch.manual_seed(0)
    model, data = toy_family.ToyScorer(), toy_family.ToyVectors()
    model.bind_data(data)
    return model, data


def _expected(model):
    with torch.no_grad():
        probs = model({"vector": torch.tensor(VECTORS)}).softmax(-1)
    return [toy_family.DIRECTIONS[int(i)] for i in probs.argmax(-1)], probs


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_family_defined_outside_zoo_exports_verifies_and_answers(fmt, tmp_path):
    from zoo.inference import InferenceInputError, load

    model, data = _toy()
    meta = export_model(model, data, fmt, tmp_path / fmt)
    assert (meta["family"], meta["task"]) == ("toy_vectors", "toy_direction")
    assert meta["verification"]["passed"] and meta["verification"]["samples"] == 24 + 3
    labels, probs = _expected(model)
    loaders = [load_predictor] + ([load] if fmt != "safetensors" else [])  # no zoo task classes needed there
    for loader in loaders:
        predictor = loader(tmp_path / fmt)
        answers = predictor.predict([{"vector": v} for v in VECTORS])
        assert [a["direction"] for a in answers] == labels
        assert max(abs(s - float(p)) for a, row in zip(answers, probs) for s, p in zip(a["scores"], row)) < 1e-5
        assert predictor.info()["width"] == 4 and predictor.info()["family"] == "toy_vectors"
        with pytest.raises(InferenceInputError) as err:
            predictor.predict([{"vector": [1, 2]}])
        assert err.value.field == "vector"


def test_verification_runs_the_familys_own_graph(tmp_path, monkeypatch):
    """A family whose exported function differs from its eager one fails verification and writes nothing."""
    model, data = _toy()

    class Doubled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *tensors):
            return self.inner(*tensors) * 2

    graph = toy_family.ToyVectorFamily.graph
    calls = []

    def drifted(model, inputs):
        calls.append(1)
        # the first call is the eager reference, the second would be the rebuilt safetensors model
        return graph(model, inputs) if len(calls) == 1 else Doubled(graph(model, inputs))

    monkeypatch.setattr(toy_family.ToyVectorFamily, "graph", classmethod(lambda cls, m, i: drifted(m, i)))
    with pytest.raises(ExportError, match="disagrees with the eager one"):
        export_model(model, data, "safetensors", tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.*"))


def test_a_model_naming_no_family_or_an_unknown_one_is_refused(tmp_path, monkeypatch):
    model, data = _toy()
    monkeypatch.setattr(toy_family.ToyScorer, "export_family", None)
    with pytest.raises(ExportError, match="names no export family"):
        export_model(model, data, "onnx", tmp_path / "a")
    monkeypatch.setattr(toy_family.ToyScorer, "export_family", "nobody")
    with pytest.raises(ExportError, match="no export family 'nobody'"):
        export_model(model, data, "onnx", tmp_path / "b")
    assert not list(tmp_path.iterdir())


def test_an_export_naming_an_unregistered_family_stops_before_serving(tmp_path, capsys):
    from zoo.cli import main

    model, data = _toy()
    export_model(model, data, "onnx", tmp_path / "toy")
    meta = json.loads((tmp_path / "toy" / "zoo_export.json").read_text())
    (tmp_path / "toy" / "zoo_export.json").write_text(json.dumps({**meta, "family": "nobody"}))
    assert main(["serve", str(tmp_path / "toy"), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "zoo_export.json" in err and "no export family 'nobody'" in err and "Traceback" not in err


def test_every_registered_model_names_a_registered_family():
    from zoo.inference import FAMILIES
    from zoo.registry import MODELS

    for name in MODELS.list():
        cls = MODELS.get(name)
        family = getattr(cls, "export_family", None)
        assert family in FAMILIES, f"model {name} ({cls.__name__}) names export family {family!r}"


def _entry_point_site(tmp: Path) -> Path:
    """A folder that, on sys.path, makes importlib.metadata see an installed plugin registering the toy family."""
    info = tmp / "site" / "zoo_toy_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[zoo.families]\ntoy_vectors = tests.export.toy_family:ToyVectorFamily\n")
    return tmp / "site"


@pytest.mark.subprocess
@pytest.mark.timeout(240)
def test_zoo_serve_finds_a_plugin_family_through_its_entry_point(tmp_path):
    from tests.serve.test_serve import _call, _free_port, kill_group, start_server

    model, data = _toy()
    export_model(model, data, "onnx", tmp_path / "toy")
    port = _free_port()
    proc = start_server(tmp_path / "toy", port, tmp_path, "--threads", "1", paths=(_entry_point_site(tmp_path),))
    try:
        labels, _ = _expected(model)
        for vector, label in zip(VECTORS, labels):
            status, answer = _call(port, "/predict", {"vector": vector}, key=None)
            assert status == 200 and answer["direction"] == label
        status, answer = _call(port, "/predict", {"vector": "north"}, key=None)
        assert status == 400 and answer["field"] == "vector"
        status, info = _call(port, "/info", key=None)
        assert info["model"]["family"] == "toy_vectors" and info["model"]["task"] == "toy_direction"
    finally:
        kill_group(proc)


def test_entry_point_registration_in_process(tmp_path, monkeypatch):
    """The registry loads an installed family by name the first time an export names it."""
    from zoo.inference import FAMILIES

    site = _entry_point_site(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    FAMILIES.unregister("toy_vectors")
    try:
        assert FAMILIES.get("toy_vectors") is toy_family.ToyVectorFamily
    finally:
        FAMILIES.register(toy_family.ToyVectorFamily, replace=True)
