"""No file chooses which code runs: a class path read from a checkpoint, ``zoo_export.json``, an ensemble member's
run config or a run's config.yaml never imports the module it names (docs/reliability.md).

Each test puts a module on ``sys.path`` whose import leaves a mark (a file and an entry in ``sys.modules``), names
it in the file, and checks that zoo refuses with one message and that the mark is absent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from zoo.cli import main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "common" / "fixtures" / "checkpoints"
CANARY = "zoo_canary_module"
SHAPES = """model:
  class_path: image_classifier
  init_args: {backbone: small_cnn, backbone_kwargs: {width: 4}}
data:
  class_path: image
  init_args: {dataset: synthetic_shapes, dataset_kwargs: {n: 30}, augment: null, image_size: null, batch_size: 8}
trainer: {max_steps: 1, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false}
"""


@pytest.fixture
def canary(tmp_path, monkeypatch):
    """A module whose import writes ``imported.txt``; returns the mark's path."""
    mark = tmp_path / "imported.txt"
    (tmp_path / f"{CANARY}.py").write_text(
        f"import pathlib\npathlib.Path({str(mark)!r}).write_text('imported')\nclass Task:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield mark
    imported = mark.exists() or CANARY in sys.modules
    sys.modules.pop(CANARY, None)
    assert not imported, "a file made zoo import the module it names"


def checkpoint(folder: Path, task: str, class_path: str | None = None) -> Path:
    saved = torch.load(FIXTURES / "image_classifier.ckpt", map_location="cpu", weights_only=True)
    saved["zoo"]["task"] = task
    if class_path is not None:
        saved["hyper_parameters"]["_class_path"] = class_path
    path = folder / "named.ckpt"
    torch.save(saved, path)
    return path


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_load_checkpoint_imports_nothing_it_names(canary, tmp_path):
    from zoo import CheckpointMismatchError, load_checkpoint

    with pytest.raises(CheckpointMismatchError, match=f"{CANARY}.Task"):
        load_checkpoint(checkpoint(tmp_path, f"{CANARY}.Task"))


@pytest.mark.parametrize("where", ["zoo-task", "hyper-parameters"])
def test_zoo_test_imports_nothing_a_checkpoint_names(canary, tmp_path, capsys, where):
    path = (checkpoint(tmp_path, f"{CANARY}.Task") if where == "zoo-task"
            else checkpoint(tmp_path, "zoo.tasks.image.ImageClassifier", class_path=f"{CANARY}.Task"))
    (tmp_path / "shapes.yaml").write_text(SHAPES)
    code, err = run_cli(["test", "--config", "shapes.yaml", "--ckpt_path", str(path)], capsys)
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert f"{CANARY}.Task" in err


def test_a_class_from_a_module_not_imported_or_not_a_task_is_not_resolved(canary):
    from zoo.checkpoints import resolve_datamodule_class, resolve_task_class

    assert resolve_task_class(f"{CANARY}.Task") is None
    assert resolve_task_class("subprocess.Popen") is None  # imported, but not a LightningModule
    assert resolve_datamodule_class(f"{CANARY}.Task") is None
    assert resolve_task_class("zoo.tasks.image.ImageClassifier").__name__ == "ImageClassifier"


def test_export_rebuild_imports_nothing_the_manifest_names(canary, tmp_path):
    from zoo.errors import ZooError
    from zoo.export.formats import rebuild

    with pytest.raises(ZooError, match=f"{CANARY}.Task"):
        rebuild(tmp_path, {"model_class": f"{CANARY}.Task", "hparams": {}, "files": {}})


def test_run_config_data_class_is_not_imported(canary, tmp_path):
    from zoo.errors import ZooError
    from zoo.export.sources import _instantiate
    from zoo.tasks.ensemble import Member

    with pytest.raises(ZooError, match=f"{CANARY}.Task"):
        _instantiate({"class_path": f"{CANARY}.Task"}, "config.yaml")
    member = Member(run=str(tmp_path), checkpoint="x.ckpt", data={"class_path": f"{CANARY}.Task"})
    with pytest.raises(ZooError, match=f"{CANARY}.Task"):
        member.datamodule()
