"""``zoo serve`` checks an export folder before serving it and keeps the server's files to itself: a folder whose
files changed after export, or whose ``zoo_export.json`` no longer fits the graph (labels, channels), is refused
with one line and exit 2 instead of answering 500s; ``/info`` shows no absolute path; an image over the pixel limit
(a decompression bomb) is a 413 naming ``image``, never a 500. In-process: nothing here starts a server."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from zoo.cli import main


@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
    from zoo.export import export_model
    from zoo.tasks.image import tiny_case

    tmp = tmp_path_factory.mktemp("checks")
    model, data = tiny_case(tmp)
    source = tmp / "run.ckpt"
    source.write_bytes(b"a checkpoint")  # only its name and hash are recorded
    export_model(model, data, "onnx", tmp / "img", source=source)
    return tmp / "img"


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def edit_manifest(folder: Path, change) -> None:
    path = folder / "zoo_export.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def refused(folder: Path, capsys) -> str:
    try:
        code = main(["serve", str(folder), "--threads", "1"])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("zoo: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_export_records_the_hash_of_every_file(image_export):
    from zoo.inference.integrity import sha256

    meta = json.loads((image_export / "zoo_export.json").read_text())
    assert meta["sha256"] == {"model.onnx": sha256(image_export / "model.onnx")}


@pytest.mark.parametrize("change, culprit", [
    (lambda m: m.update(labels=m["labels"][:2]), r"lists 2 labels, but the graph answers 3"),
    (lambda m: m["preprocessing"].update(channels=1), r"channels is 1, but the graph takes 3-channel"),
])
def test_a_manifest_that_does_not_fit_the_graph_is_refused(image_export, tmp_path, capsys, change, culprit):
    folder = copy_of(image_export, tmp_path)
    edit_manifest(folder, change)
    line = refused(folder, capsys)
    assert "zoo_export.json" in line and __import__("re").search(culprit, line), line


def test_a_file_changed_after_export_is_refused(image_export, tmp_path, capsys):
    folder = copy_of(image_export, tmp_path)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    line = refused(folder, capsys)
    assert "model.onnx: its SHA-256 differs" in line, line


def test_info_shows_no_absolute_path(image_export):
    from zoo.serve import build_server

    info = build_server(image_export, threads=1).model_metadata
    text = json.dumps(info)
    assert info["source"]["checkpoint"] == "run.ckpt" and str(image_export.parent) not in text, text


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header declaring ``width`` x ``height`` pixels, with one empty data chunk: PIL refuses it on opening,
    so the test never allocates the pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_an_image_over_the_pixel_limit_is_413_naming_image(image_export, monkeypatch):
    from PIL import Image

    from zoo.inference import read_export
    from zoo.serve.api import Invalid, PredictAPI

    api = PredictAPI(export=read_export(image_export), backend=None, calibration="temperature", threads=1,
                     max_batch_size=2)
    api.setup("cpu")
    bomb = api.decode_request({"image": base64.b64encode(bomb_png(30000, 30000)).decode()})
    assert isinstance(bomb, Invalid) and (bomb.field, bomb.status) == ("image", 413), bomb
    assert "900000000 pixels" in bomb.detail
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # PIL alone only warns below twice its limit
    small = api.decode_request({"image": base64.b64encode(bomb_png(16, 16)).decode()})
    assert isinstance(small, Invalid) and small.status == 413 and "16x16 pixels" in small.detail, small
