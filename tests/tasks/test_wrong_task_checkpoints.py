"""A checkpoint of another task family is refused with one message on every path, instead of a state-dict error
from deep inside torch: each ordered pair of families (image, text, token, recommender), through
`zoo fit|validate|test|predict --ckpt_path` (the command rotates over the pairs, so each command meets three pairs)
and through the Python API."""

import itertools
from pathlib import Path

import pytest
import torch

from zoo.checkpoints import CheckpointMismatchError

REPO = Path(__file__).resolve().parents[2]
FAMILIES = {  # family -> (a shipped recipe, the task class its checkpoints name)
    "image": ("recipes/vision/digits_tiny.yaml", "zoo.tasks.image.ImageClassifier"),
    "text": ("recipes/text/bbc_news_fasttext.yaml", "zoo.tasks.text.ngram.FastTextClassifier"),
    "token": ("recipes/text/ner.yaml", "zoo.tasks.text.token.TokenClassifier"),
    "recsys": ("recipes/recsys/bpr_ml100k.yaml", "zoo.tasks.recsys.bpr.BPR"),
}
PAIRS = list(itertools.permutations(FAMILIES, 2))
COMMANDS = ("fit", "validate", "test", "predict")


def _checkpoint_of(task: str, folder: Path) -> Path:
    path = folder / f"{task.rsplit('.', 1)[-1]}.ckpt"
    torch.save({"zoo": {"task": task, "zoo_version": "0.2.0"}, "state_dict": {}, "epoch": 0, "global_step": 0,
                "loops": {}, "hyper_parameters": {}}, path)
    return path


@pytest.mark.parametrize("recipe_family,ckpt_family", PAIRS, ids=[f"{a}-recipe-{b}-ckpt" for a, b in PAIRS])
def test_cli_refuses_a_checkpoint_of_another_family(recipe_family, ckpt_family, tmp_path, capsys):
    from zoo.cli import main

    recipe, expected = FAMILIES[recipe_family]
    _, saved = FAMILIES[ckpt_family]
    command = COMMANDS[PAIRS.index((recipe_family, ckpt_family)) % len(COMMANDS)]
    ckpt = _checkpoint_of(saved, tmp_path)
    before = set(tmp_path.rglob("*"))
    code = main([command, "--config", str(REPO / recipe), "--ckpt_path", str(ckpt),
                 "--trainer.default_root_dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    first = next(line for line in err.splitlines() if line.startswith("zoo: error:"))
    assert f"is a checkpoint of {saved}, not of {expected}" in first, first
    assert "Traceback" not in err
    assert set(tmp_path.rglob("*")) == before, "a refused command left files behind"


@pytest.mark.parametrize("recipe_family,ckpt_family", PAIRS, ids=[f"{a}-class-{b}-ckpt" for a, b in PAIRS])
def test_python_api_refuses_a_checkpoint_of_another_family(recipe_family, ckpt_family, tmp_path):
    import importlib

    module, _, name = FAMILIES[recipe_family][1].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    ckpt = _checkpoint_of(FAMILIES[ckpt_family][1], tmp_path)
    with pytest.raises(CheckpointMismatchError, match=f"is a checkpoint of {FAMILIES[ckpt_family][1]}, not of"):
        cls.load_from_checkpoint(str(ckpt))
