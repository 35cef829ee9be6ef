"""A fit, a resume and a real `zoo fit` process print none of the warnings a user cannot act on (dependency
notices, Lightning's hints for its own internals): zoo's console output is its own `zoo:` lines and the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zoo.backbones.text import tiny_bert_dir
from zoo.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_bert_dir(tmp_path_factory.mktemp("tiny_bert")))


NOISE = ["litlogger", "litmodels", "LeafSpec", "dirpath has changed", "is_gradient_checkpointing",
         "callbacks list already contains a Timer", "LightningCLI's args parameter",
         "is not supported by the model summary", "was called without a model", "there is no last checkpoint available",
         "callbacks used to create the checkpoint need to be provided", "`weights_only` was not set",
         # recommenders: caused by zoo's recsys task / loaders, nothing a user can change
         "You have overridden `transfer_batch_to_device`", "`IterableDataset` has `__len__` defined",
         # zoo's own warnings are one `zoo:` line, not Python's "file.py:N: UserWarning: ..." and its source line
         "UserWarning", "rank_zero_warn("]


@pytest.mark.slow
def test_a_tiny_fit_and_resume_print_none_of_the_noise(tiny, tmp_path, capfd):
    args = ["--config", str(ROOT / "recipes/text/ner_lora.yaml"), "--model.init_args.encoder", tiny,
            "--data.init_args.tokenizer", tiny, "--data.init_args.max_samples", "16", "--data.init_args.batch_size",
            "8", "--data.init_args.cache_dir", str(tmp_path / "c"), "--trainer.default_root_dir", "runs",
            "--trainer.log_every_n_steps", "1"]
    assert main(["fit", *args, "--trainer.max_epochs", "1"]) == 0
    last = next(Path("runs").rglob("last.ckpt"))
    assert main(["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", str(last)]) == 0
    out = capfd.readouterr()
    printed = out.out + out.err
    assert "Epoch 1" in printed or "epoch" in printed.lower()  # the run itself still reports
    assert [s for s in NOISE if s in printed] == []


@pytest.mark.subprocess
@pytest.mark.timeout(900)
def test_a_real_zoo_fit_process_prints_none_of_the_noise(tmp_path):
    """As a user runs it: a separate process, Lightning's own console logging set up by the CLI (in-process tests
    do not see Lightning's INFO lines, e.g. the checkpoint connector's "`weights_only` was not set")."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config",
                          str(ROOT / "recipes/vision/digits_tiny.yaml"),
                          "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "runs")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    printed = out.stdout + out.stderr
    assert out.returncode == 0, printed[-3000:]
    assert "Trainable params" in printed  # Lightning's console output is there to be checked
    assert [s for s in NOISE if s in printed] == []


@pytest.mark.subprocess
@pytest.mark.timeout(900)
def test_a_real_recommender_fit_process_prints_none_of_the_noise(tmp_path):
    """A recsys recipe on the user's own tiny log and catalogue (one item without text), in its own process."""
    import subprocess
    import sys

    (tmp_path / "log.csv").write_text("user_id,item_id\n" + "".join(f"u{u},i{(u + k) % 12}\n" for u in range(20)
                                                                     for k in range(6)))
    (tmp_path / "items.csv").write_text("item_id,title\n" + "".join(f"i{i},{'' if i == 7 else f'Film {i}'}\n"
                                                                      for i in range(12)))
    out = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config",
                          str(ROOT / "recipes/recsys/bpr_ml100k.yaml"),
                          "--data.init_args.dataset", "null", "--data.init_args.path", "log.csv",
                          "--data.init_args.items_path", "items.csv", "--data.init_args.batch_size", "32",
                          "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1",
                          "--trainer.default_root_dir", str(tmp_path / "runs")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    printed = out.stdout + out.stderr
    assert out.returncode == 0, printed[-3000:]
    assert "zoo: items.csv: item text from column(s) title, e.g.\n  'i0': 'title: Film 0.'" in printed
    assert ("\nzoo: items.csv: 1 of 12 item(s) have an empty text (all of title blank), e.g. ['i7']; text-aware "
            "models see only their ID\n") in printed
    assert [s for s in NOISE if s in printed] == []
