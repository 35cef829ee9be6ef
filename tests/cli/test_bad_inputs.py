"""Every bad input gets one clear message: exit code 2, the first error line names the culprit, no traceback, and
nothing is left behind (no run directory, no half-written file).

The table :data:`ROWS` is the error catalogue of docs/reliability.md (a test checks the two agree). Each row writes
its inputs into the test's folder, then runs the CLI in this process (``zoo.cli.main``); a few run as real
``zoo`` processes, where a process is the point.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from zoo.cli import main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "common" / "fixtures" / "checkpoints"
DOC = ROOT / "docs" / "reliability.md"

SHAPES = """seed_everything: 1
model:
  class_path: image_classifier
  init_args: {backbone: small_cnn, backbone_kwargs: {width: 4}}
data:
  class_path: image
  init_args: {dataset: synthetic_shapes, dataset_kwargs: {n: 30}, augment: null, image_size: null, batch_size: 8}
trainer: {max_steps: 1, limit_val_batches: 1, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false}
"""


def image_csv_recipe(csv_name: str = "images.csv") -> str:
    return (SHAPES.replace("dataset: synthetic_shapes, dataset_kwargs: {n: 30}, augment: null, image_size: null",
                           f"csv: {csv_name}, image_size: 8, augment: null"))


TEXT = """seed_everything: 1
model:
  class_path: text_classifier
  init_args: {{encoder: {tiny}}}
data:
  class_path: text
  init_args: {{train: {file}, tokenizer: {tiny}, max_length: 16, batch_size: 4, cache_dir: cache}}
trainer: {{max_steps: 1, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false}}
"""

TOKEN = TEXT.replace("text_classifier", "token_classifier").replace("class_path: text\n", "class_path: token\n")

RECSYS = """seed_everything: 1
model:
  class_path: bpr
  init_args: {{embedding_dim: 4}}
data:
  class_path: interactions
  init_args: {{path: {file}, batch_size: 16{extra}}}
trainer: {{max_steps: 1, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false}}
"""


@dataclass
class Row:
    """One bad input: ``setup(folder)`` writes the inputs and returns the ``zoo`` arguments; ``culprit`` is a
    regular expression the first error line must match (the flag, file, row or checkpoint at fault)."""

    id: str
    kind: str  # flag | yaml | data | checkpoint | environment
    setup: Callable[[Path], list[str]]
    culprit: str
    what: str
    subprocess: bool = False
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    tags: tuple[str, ...] = field(default=())


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def shapes(folder: Path, *extra: str) -> list[str]:
    write(folder, "shapes.yaml", SHAPES)
    return ["--config", "shapes.yaml", *extra]


def fit_shapes(*extra: str) -> Callable[[Path], list[str]]:
    return lambda folder: ["fit", *shapes(folder, *extra)]


def png(folder: Path, name: str) -> Path:
    from PIL import Image

    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), color=128).save(path)
    return path


def image_rows(content: Callable[[Path], str], csv_name: str = "images.csv") -> Callable[[Path], list[str]]:
    def setup(folder: Path) -> list[str]:
        for i in range(4):
            png(folder, f"img/{i}.png")
        text = content(folder)
        write(folder, csv_name, text.encode("latin-1") if "\xe9" in text else text)
        write(folder, "img.yaml", image_csv_recipe(csv_name))
        return ["fit", "--config", "img.yaml"]
    return setup


GOOD_IMAGES = "".join(f"img/{i}.png,{'ab'[i % 2]}\n" for i in range(4))


def text_rows(content: str | bytes, template: str = TEXT) -> Callable[[Path], list[str]]:
    def setup(folder: Path) -> list[str]:
        from zoo.backbones.text import tiny_bert_dir

        tiny = tiny_bert_dir(Path(os.environ.get("ZOO_TEST_TINY_BERT", folder / "tiny")))
        write(folder, "data.csv", content)
        write(folder, "text.yaml", template.format(tiny=tiny, file="data.csv"))
        return ["fit", "--config", "text.yaml"]
    return setup


GOOD_TEXT = "text,label\n" + "".join(f"{'good day' if i % 2 else 'bad day'},{'pos' if i % 2 else 'neg'}\n"
                                     for i in range(12))


def recsys_rows(content: str, extra: str = "") -> Callable[[Path], list[str]]:
    def setup(folder: Path) -> list[str]:
        write(folder, "inter.csv", content)
        write(folder, "rec.yaml", RECSYS.format(file="inter.csv", extra=extra))
        return ["fit", "--config", "rec.yaml"]
    return setup


INTER = "user_id,item_id,rating,timestamp\n" + "".join(f"u{u},i{(u * 7 + k) % 15},4,{k}\n" for u in range(8)
                                                       for k in range(6))


def checkpoint_row(make: Callable[[Path], Path], command: str = "test") -> Callable[[Path], list[str]]:
    def setup(folder: Path) -> list[str]:
        return [command, *shapes(folder), "--ckpt_path", str(make(folder))]
    return setup


def truncated(folder: Path) -> Path:
    data = (FIXTURES / "image_classifier.ckpt").read_bytes()
    return write(folder, "trunc.ckpt", data[: len(data) // 2])


def malicious(folder: Path) -> Path:
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > pwned.txt",))

    path = folder / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload()}, path)
    return path


def foreign(task: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / f"{task.rsplit('.', 1)[-1]}.ckpt"
        torch.save({"zoo": {"task": task, "zoo_version": "0.2.0"}, "state_dict": {}, "epoch": 0, "global_step": 0,
                    "loops": {}}, path)
        return path
    return make


def bomb_png(folder: Path, name: str) -> Path:
    """A PNG header declaring 30000 x 30000 pixels (PIL refuses it on opening: nothing is allocated)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
    return write(folder, name, b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


#: ten aliases, each of ten of the one before: 10**10 values once copied out, in a few lines
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9))


def disk_full(mp: pytest.MonkeyPatch) -> None:
    def no_space(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(f) if isinstance(f, str | Path) else None)

    mp.setattr(torch, "save", no_space)  # every checkpoint write, Lightning's included


def read_only(mp: pytest.MonkeyPatch) -> None:
    # tests may run as root, which chmod cannot stop: the refusal is simulated at mkdir
    real = Path.mkdir

    def refuse(self, *args, **kwargs):
        if "version_" in self.name:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    mp.setattr(Path, "mkdir", refuse)


ROWS: list[Row] = [
    # -- command-line flags ---------------------------------------------------------------------------------
    Row("unknown-command", "flag", lambda f: ["fitt"], r"unknown command 'fitt'", "a command that does not exist"),
    Row("unknown-trainer-key", "flag", fit_shapes("--trainer.max_epohcs", "3"), r"max_epohcs",
        "a misspelt trainer flag"),
    Row("abbreviated-trainer-key", "flag", fit_shapes("--trainer.max_epoch", "3"),
        r"'trainer\.max_epoch' is not an accepted key; did you mean: trainer\.max_epochs",
        "a flag cut short (argparse would take it as an abbreviation)"),
    Row("weights-only-false", "flag",
        lambda f: ["test", *shapes(f), "--weights_only", "false", "--ckpt_path",
                   str(FIXTURES / "image_classifier.ckpt")],
        r"--weights_only false", "--weights_only false (zoo loads tensors and plain values only)"),
    Row("max-epochs-minus-one", "flag", fit_shapes("--trainer.max_epochs", "-1", "--trainer.max_steps", "-1"),
        r"--trainer\.max_epochs -1", "a run without end (max_epochs -1, no max_steps)"),
    Row("max-epochs-negative", "flag", fit_shapes("--trainer.max_epochs", "-5"), r"--trainer\.max_epochs",
        "max_epochs below -1"),
    Row("max-steps-negative", "flag", fit_shapes("--trainer.max_steps", "-3"), r"--trainer\.max_steps",
        "max_steps below -1"),
    Row("batch-size-zero", "flag", fit_shapes("--data.init_args.batch_size", "0"), r"batch_size", "batch_size 0"),
    Row("batch-size-negative", "flag", fit_shapes("--data.init_args.batch_size", "-4"), r"batch_size",
        "a negative batch_size"),
    Row("lr-zero", "flag", fit_shapes("--model.init_args.lr", "0"), r"model\.init_args\.lr", "learning rate 0"),
    Row("lr-not-a-number", "flag", fit_shapes("--model.init_args.lr", "abc"), r"lr",
        "a learning rate that is not a number"),
    Row("unknown-optimizer", "flag", fit_shapes("--model.init_args.optimizer", "lion"), r"optimizer",
        "an optimizer zoo does not have"),
    Row("unknown-scheduler", "flag", fit_shapes("--model.init_args.scheduler", "cosin"), r"scheduler",
        "a misspelt scheduler"),
    Row("warmup-ratio-above-one", "flag", fit_shapes("--model.init_args.warmup_ratio", "1.5"), r"warmup_ratio",
        "warmup_ratio 1.5"),
    Row("val-fraction-above-one", "flag", fit_shapes("--data.init_args.val_fraction", "1.5"), r"val_fraction",
        "val_fraction 1.5"),
    Row("unknown-model", "flag", fit_shapes("--model.class_path", "no_such_model"), r"no_such_model",
        "a model that is not registered"),
    Row("class-path-typo", "flag", fit_shapes("--model.class_path", "zoo.tasks.recsys.bpr.BRP"),
        r"fit: error: --model\.class_path zoo\.tasks\.recsys\.bpr\.BRP: module .* has no attribute 'BRP'; did you "
        r"mean: \S*BPR", "a typo in a model's class path (the cause comes first)"),
    Row("unknown-backbone", "flag", fit_shapes("--model.init_args.backbone", "resnet9000"), r"resnet9000",
        "a backbone that does not exist"),
    Row("missing-config-file", "flag", lambda f: ["fit", "--config", "nowhere.yaml"], r"nowhere\.yaml",
        "a --config file that does not exist"),
    Row("predict-without-checkpoint", "flag", lambda f: ["predict", *shapes(f)], r"--ckpt_path",
        "predict with random weights"),
    Row("test-without-checkpoint", "flag", lambda f: ["test", *shapes(f)], r"--ckpt_path", "test with random weights"),
    Row("resume-on-test", "flag", lambda f: ["test", *shapes(f), "--resume", "auto"], r"--resume",
        "--resume given to zoo test"),
    Row("resume-missing-path", "flag", fit_shapes("--resume", "nowhere/version_3"), r"nowhere/version_3",
        "--resume of a folder that does not exist"),
    Row("resume-and-ckpt-path", "flag", fit_shapes("--resume", "auto", "--ckpt_path", "x.ckpt"),
        r"--resume or --ckpt_path", "--resume and --ckpt_path together"),
    Row("ckpt-path-best", "flag", lambda f: ["test", *shapes(f), "--ckpt_path", "best"], r"--ckpt_path best",
        "ckpt_path 'best' (only meaningful inside one process)"),
    Row("ckpt-path-last-nothing", "flag", lambda f: ["test", *shapes(f), "--ckpt_path", "last"], r"--ckpt_path last",
        "ckpt_path 'last' with no run to take it from"),
    Row("precision-unknown", "flag", fit_shapes("--trainer.precision", "7"), r"precision",
        "a precision Lightning does not have"),
    Row("seed-out-of-range", "flag", fit_shapes("--seed_everything", str(2**70)), r"--seed_everything \d+: a seed",
        "a seed beyond numpy's range (2**70)"),
    Row("devices-beyond-machine", "flag", fit_shapes("--trainer.devices", "4096"), r"--trainer\.devices 4096",
        "more devices than the machine has (no empty version_N left)"),
    Row("predict-output-is-a-folder", "flag",
        lambda f: ["predict", *shapes(f), "--ckpt_path", str(FIXTURES / "image_classifier.ckpt"), "--output",
                   str((f / "outdir").mkdir() or f / "outdir")], r"--output \S*outdir is a folder",
        "zoo predict --output naming an existing folder"),
    Row("export-out-is-a-file", "flag",
        lambda f: ["export", "runs/x/version_0", "--format", "onnx", "--out", str(write(f, "afile", "x"))],
        r"--out \S*afile is a file", "zoo export --out naming a file"),
    # -- YAML files -------------------------------------------------------------------------------------------
    Row("yaml-syntax", "yaml",
        lambda f: ["fit", "--config", str(write(f, "bad.yaml", "model:\n  class_path: bpr\n   init_args: {\n"))],
        r"bad\.yaml: invalid YAML, line \d+", "a YAML syntax error (named with file and line)"),
    Row("yaml-tab-indent", "yaml",
        lambda f: ["fit", "--config", str(write(f, "tab.yaml", "model:\n\tclass_path: bpr\n"))],
        r"tab\.yaml: invalid YAML, line 2", "a tab used for indentation"),
    Row("yaml-not-utf8", "yaml", lambda f: ["fit", "--config", str(write(f, "latin.yaml", b"model: caf\xe9\n"))],
        r"latin\.yaml: not UTF-8", "a YAML file that is not UTF-8"),
    Row("yaml-unknown-section", "yaml",
        lambda f: ["fit", "--config", str(write(f, "typo.yaml", SHAPES + "trainr: {max_epochs: 2}\n"))],
        r"trainr", "a misspelt top-level section"),
    Row("yaml-wrong-type", "yaml",
        lambda f: ["fit", "--config", str(write(f, "type.yaml", SHAPES.replace("max_steps: 1", "max_steps: many")))],
        r"max_steps", "a word where a number is expected"),
    Row("yaml-unknown-model-arg", "yaml",
        lambda f: ["fit", "--config",
                   str(write(f, "arg.yaml", SHAPES.replace("backbone: small_cnn", "backbon: small_cnn")))],
        r"backbon", "a misspelt model argument"),
    Row("yaml-alias-bomb", "yaml", lambda f: ["fit", "--config", str(write(f, "bomb.yaml", ALIAS_BOMB))],
        r"bomb\.yaml: its aliases \(\*name\) expand to more than", "a YAML alias bomb (10**10 values)"),
    # -- data files -----------------------------------------------------------------------------------------
    Row("image-csv-empty", "data", image_rows(lambda f: ""), r"images\.csv", "an empty image CSV"),
    Row("image-csv-header-only", "data", image_rows(lambda f: "path,label\n"), r"images\.csv",
        "an image CSV with a header and no rows"),
    Row("image-csv-wrong-columns", "data", image_rows(lambda f: "file,class\n" + GOOD_IMAGES),
        r"images\.csv: missing column", "an image CSV without path / label columns"),
    Row("image-missing-file", "data", image_rows(lambda f: "path,label\n" + GOOD_IMAGES + "img/none.png,a\n"),
        r"images\.csv row \d+: image file not found", "an image CSV naming a file that does not exist"),
    Row("image-corrupt", "data",
        image_rows(lambda f: (write(f, "img/bad.png", os.urandom(300)) and "path,label\n" + GOOD_IMAGES
                              + "img/bad.png,b\n")), r"bad\.png", "a corrupt image (random bytes)"),
    Row("image-decompression-bomb", "data",
        image_rows(lambda f: (bomb_png(f, "img/bomb.png") and "path,label\n" + GOOD_IMAGES + "img/bomb.png,b\n")),
        r"bomb\.png.*decompression bomb", "a 30000 x 30000 PNG (a decompression bomb)"),
    Row("image-zero-bytes", "data",
        image_rows(lambda f: (write(f, "img/empty.png", b"") and "path,label\n" + GOOD_IMAGES + "img/empty.png,b\n")),
        r"empty\.png", "a zero-byte image"),
    Row("image-csv-not-utf8", "data", image_rows(lambda f: "path,label\n" + GOOD_IMAGES + "img/0.png,caf\xe9\n"),
        r"images\.csv", "an image CSV that is not UTF-8"),
    Row("image-csv-duplicate-header", "data",
        image_rows(lambda f: "path,path,label\n" + "".join(f"img/{i}.png,img/{i}.png,a\n" for i in range(4))),
        r"images\.csv.*path", "an image CSV with a column named twice"),
    Row("text-csv-empty", "data", text_rows(""), r"data\.csv", "an empty text CSV"),
    Row("text-csv-header-only", "data", text_rows("text,label\n"), r"data\.csv",
        "a text CSV with a header and no rows"),
    Row("text-csv-wrong-columns", "data", text_rows("sentence,label\n" + GOOD_TEXT.split("\n", 1)[1]),
        r"data\.csv.*text", "a text CSV without its text column"),
    Row("text-csv-not-utf8", "data", text_rows(GOOD_TEXT.encode() + "caf\xe9 day,pos\n".encode("latin-1")),
        r"data\.csv", "a text CSV that is not UTF-8"),
    Row("text-csv-bom-wrong-column", "data", text_rows("\ufefftxt,label\n" + GOOD_TEXT.split("\n", 1)[1]),
        r"data\.csv.*text", "a text CSV with a BOM and no text column"),
    Row("text-csv-10mb-line", "data", text_rows(GOOD_TEXT + "x" * 10_000_000 + "\n"),
        r"data\.csv.*row \d+|data\.csv.*label", "a 10 MB line without its label"),
    Row("text-csv-duplicate-header", "data", text_rows("text,text,label\n" + "a,b,pos\nc,d,neg\n" * 6),
        r"data\.csv.*text", "a text CSV with a column named twice"),
    Row("text-csv-empty-label", "data", text_rows(GOOD_TEXT + "fine day,\n"), r"data\.csv.*row \d+|data\.csv.*label",
        "a row without its label"),
    Row("text-csv-nan-label", "data", text_rows(GOOD_TEXT + "fine day,NaN\n"),
        r"data\.csv row 13: missing label 'NaN'.*data\.missing_label: drop",
        "a label that says NaN (not a class of its own; data.missing_label: drop leaves such rows out)"),
    Row("text-csv-null-label", "data", text_rows(GOOD_TEXT + "fine day,null\n"), r"data\.csv row 13: missing label",
        "a label that says null"),
    Row("card-of-an-empty-folder", "environment", lambda f: ["card", str((f / "empty").mkdir() or f / "empty")],
        r"empty holds no run", "zoo card of a folder with no run (no card written)"),
    Row("token-conll-empty", "data", text_rows("", template=TOKEN), r"data\.csv", "an empty CoNLL file"),
    Row("recsys-empty", "data", recsys_rows(""), r"inter\.csv", "an empty interactions file"),
    Row("recsys-missing-user-column", "data", recsys_rows(INTER.replace("user_id", "customer")),
        r"inter\.csv: no user column", "interactions without the user column"),
    Row("recsys-nan-rating", "data", recsys_rows(INTER + "u1,i3,nan,99\n"), r"inter\.csv.*rating|rating.*inter\.csv",
        "a NaN rating"),
    Row("recsys-inf-rating", "data", recsys_rows(INTER + "u1,i3,inf,99\n"), r"inter\.csv.*rating|rating.*inter\.csv",
        "an infinite rating"),
    Row("recsys-text-rating", "data", recsys_rows(INTER + "u1,i3,five,99\n"), r"inter\.csv.*rating|rating.*inter\.csv",
        "a rating that is not a number"),
    Row("recsys-duplicate-header", "data", recsys_rows(INTER.replace("rating", "item_id", 1)),
        r"inter\.csv.*item_id|item_id.*inter\.csv", "an interactions header naming a column twice"),
    Row("recsys-unknown-user", "data",
        lambda f: ["predict", "--config",
                   str(write(f, "rec.yaml", RECSYS.format(file="x", extra="")
                             .replace("path: x", "dataset: synthetic_interactions")
                             .replace("batch_size: 16", "batch_size: 16, predict_users: [ghost]"))),
                   "--ckpt_path", str(FIXTURES / "bpr.ckpt")], r"ghost",
        "a prediction for a user id that is not in the data"),
    # -- checkpoints ----------------------------------------------------------------------------------------
    Row("ckpt-missing", "checkpoint", lambda f: ["test", *shapes(f), "--ckpt_path", "none.ckpt"],
        r"none\.ckpt does not exist", "a checkpoint path that does not exist"),
    Row("ckpt-zero-bytes", "checkpoint", checkpoint_row(lambda f: write(f, "zero.ckpt", b"")), r"zero\.ckpt is empty",
        "a zero-byte checkpoint"),
    Row("ckpt-truncated", "checkpoint", checkpoint_row(truncated), r"trunc\.ckpt is truncated",
        "a truncated checkpoint"),
    Row("ckpt-random-bytes", "checkpoint", checkpoint_row(lambda f: write(f, "noise.ckpt", os.urandom(4096))),
        r"noise\.ckpt is not a checkpoint", "random bytes"),
    Row("ckpt-malicious-pickle", "checkpoint", checkpoint_row(malicious), r"evil\.ckpt needs code to unpickle",
        "a pickle that runs code when loaded"),
    Row("ckpt-malicious-pickle-fit", "checkpoint", checkpoint_row(malicious, "fit"),
        r"evil\.ckpt needs code to unpickle", "fit --ckpt_path of a pickle that runs code when loaded"),
    Row("ckpt-malicious-pickle-validate", "checkpoint", checkpoint_row(malicious, "validate"),
        r"evil\.ckpt needs code to unpickle", "validate --ckpt_path of a pickle that runs code when loaded"),
    Row("ckpt-malicious-pickle-predict", "checkpoint", checkpoint_row(malicious, "predict"),
        r"evil\.ckpt needs code to unpickle", "predict --ckpt_path of a pickle that runs code when loaded"),
    Row("ckpt-malicious-pickle-resume", "checkpoint", lambda f: ["fit", *shapes(f), "--resume", str(malicious(f))],
        r"--resume \S*evil\.ckpt: no valid checkpoint",
        "fit --resume of a pickle that runs code when loaded"),
    Row("ckpt-not-zoo", "checkpoint",
        checkpoint_row(lambda f: (torch.save({"state_dict": {}}, f / "plain.ckpt"), f / "plain.ckpt")[1]),
        r"plain\.ckpt was not written by zoo", "a plain Lightning / torch checkpoint"),
    Row("ckpt-other-task", "checkpoint", checkpoint_row(lambda f: FIXTURES / "bpr.ckpt"),
        r"bpr\.ckpt is a checkpoint of zoo\.tasks\.recsys\.bpr\.BPR, not of zoo\.tasks\.image\.ImageClassifier",
        "a checkpoint of another task"),
    Row("ckpt-other-task-fit", "checkpoint", checkpoint_row(foreign("zoo.tasks.text.TextClassifier"), "fit"),
        r"is a checkpoint of zoo\.tasks\.text\.TextClassifier", "fit --ckpt_path of another task"),
    Row("ckpt-other-data", "checkpoint",
        lambda f: ["test", *shapes(f), "--data.init_args.dataset", "digits", "--data.init_args.dataset_kwargs", "{}",
                   "--ckpt_path", str(FIXTURES / "image_classifier.ckpt")],
        r"3-channel images, the data has 1",
        "a checkpoint built for other data (3 classes of RGB shapes, tested on 10 classes of gray digits)"),
    Row("ckpt-adapter-without-base", "checkpoint",
        lambda f: ["test", "--config", str(write(f, "lora.yaml", TEXT.format(tiny="tiny", file="data.csv"))),
                   "--ckpt_path", str(FIXTURES / "text_classifier_lora.ckpt")],
        r"tiny_bert|encoder", "an adapter-only checkpoint whose base model is not there"),
    Row("ckpt-names-any-module", "checkpoint", checkpoint_row(foreign("this.Nothing")), r"this\.Nothing",
        "a checkpoint naming a module outside zoo as its task (never imported)"),
    # -- environment ----------------------------------------------------------------------------------------
    Row("run-dir-is-a-file", "environment",
        lambda f: ["fit", *shapes(f), "--trainer.default_root_dir", str(write(f, "runs_file", "x"))], r"runs_file",
        "--trainer.default_root_dir naming a file"),
    Row("run-dir-read-only", "environment", fit_shapes("--trainer.default_root_dir", "ro"),
        r"ro/shapes/version_0.*permission denied", "a run directory that cannot be created (read-only)",
        patch=read_only),
    Row("run-dir-name-too-long", "environment", fit_shapes("--trainer.default_root_dir", "r/" + "x" * 300),
        r"cannot create the run directory .*too long", "a 300-character --trainer.default_root_dir"),
    Row("disk-full", "environment", fit_shapes("--trainer.max_steps", "1"), r"No space left",
        "the disk filling up while a checkpoint is written", patch=disk_full),
    Row("subprocess-truncated-checkpoint", "checkpoint", checkpoint_row(truncated), r"trunc\.ckpt is truncated",
        "a truncated checkpoint, in a real zoo process", subprocess=True),
    Row("subprocess-yaml-syntax", "yaml", lambda f: ["fit", "--config", str(write(f, "bad.yaml", "a: [\n"))],
        r"bad\.yaml: invalid YAML", "invalid YAML, in a real zoo process", subprocess=True),
]


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if re.match(r"\S+( \w+)?: error:", line)]  # prog: "zoo fit"
    assert lines, f"no 'zoo: error:' line in:\n{stderr[-2000:]}"
    return lines[0]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from zoo.backbones.text import tiny_bert_dir

    path = tiny_bert_dir(tmp_path_factory.mktemp("tiny"))
    os.environ["ZOO_TEST_TINY_BERT"] = str(path)
    yield path
    os.environ.pop("ZOO_TEST_TINY_BERT", None)


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id, marks=pytest.mark.subprocess if r.subprocess else ())
                                 for r in ROWS])
def test_bad_input_gives_one_clear_message(row, tmp_path, capsys, monkeypatch, tiny_bert):
    argv = row.setup(tmp_path)
    before = listing(tmp_path)
    if row.subprocess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("ZOO_DEBUG", None)
        proc = subprocess.run([sys.executable, "-m", "zoo.cli", *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True)
        code, err = proc.returncode, proc.stderr
    else:
        monkeypatch.delenv("ZOO_DEBUG", raising=False)
        if row.patch:
            row.patch(monkeypatch)
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    line = error_line(err)
    assert re.search(row.culprit, line), f"{row.culprit!r} not in first error line: {line}"
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err
    assert listing(tmp_path) == before, f"left behind: {sorted(listing(tmp_path) - before)}"
    assert not (tmp_path / "pwned.txt").exists()
    assert "this" not in sys.modules  # a checkpoint naming a module does not get it imported


def test_table_has_every_kind_and_at_least_50_rows():
    assert len(ROWS) >= 50 and len({r.id for r in ROWS}) == len(ROWS)
    assert {r.kind for r in ROWS} == {"flag", "yaml", "data", "checkpoint", "environment"}


def catalogue() -> str:
    """The error catalogue of docs/reliability.md, generated from :data:`ROWS`."""
    lines = ["| kind | bad input | the first error line matches |", "|---|---|---|"]
    for row in ROWS:
        lines.append(f"| {row.kind} | {row.what} | `{row.culprit.replace('|', '¦')}` |")
    return "\n".join(lines)


def test_docs_list_the_same_rows():
    text = DOC.read_text(encoding="utf-8")
    start, end = "<!-- catalogue:start -->", "<!-- catalogue:end -->"
    assert start in text and end in text, "docs/reliability.md lost its catalogue markers"
    current = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert current == catalogue(), ("docs/reliability.md's catalogue differs from tests/cli/test_bad_inputs.py; "
                                    "regenerate it with: python -m tests.cli.test_bad_inputs")


if __name__ == "__main__":  # rewrite the catalogue in docs/reliability.md from the table
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split("<!-- catalogue:start -->", 1)
    tail = rest.split("<!-- catalogue:end -->", 1)[1]
    DOC.write_text(f"{head}<!-- catalogue:start -->\n{catalogue()}\n<!-- catalogue:end -->{tail}", encoding="utf-8")
