"""``TokenDataModule``: token classification (NER) from CoNLL / IOB2 or JSONL tagged files or a built-in set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from zoo.data.files import read_text
from zoo.data.splits import limit
from zoo.data.text.base import TextDataBase
from zoo.data.text.batching import TokenizedSet
from zoo.data.text.cache import Ragged
from zoo.data.text.conll import Sentence, check_bio_mode, read_tagged
from zoo.data.text.readers import TextDataError
from zoo.data.text.words import align_labels, join_words, split_words
from zoo.registry import DATAMODULES, DATASETS

#: (words, their character spans in text, text, tags or None when predicting, row id)
Item = tuple[list[str], list[tuple[int, int]], str, list[str] | None, str]


@DATAMODULES.register("token", tags=("text", "ner"), summary="token classification (NER) from CoNLL/IOB2 or JSONL")
class TokenDataModule(TextDataBase):
    """NER data: CoNLL / IOB2 files (``token tag`` per line) or JSONL (``{"tokens": [...], "tags": [...]}``).

    Args:
        train / val / test: files; without val / test, random splits of ``train``.
        dataset: a built-in tagged set (``ner_demo``).
        predict: a text file with one raw sentence per line, for ``zoo predict`` (default: the test split).
        tags: fix the tag set (default: sorted tags seen in training).
        bio: ``error`` (default) stops at an ``I-X`` that does not continue an ``X`` entity, naming file and line;
            ``repair`` turns such tags into ``B-X`` (the usual conversion) and logs how many it changed.
        max_length: sub-word tokens per sentence; words cut off are counted and logged.
        tokenizer, max_samples, fractions, batch sizes, ...: shared with classification data, see
            :class:`~zoo.data.text.base.TextDataBase`.
    """

    def __init__(
        self,
        tags: list[str] | None = None,
        bio: Literal["error", "repair"] = "error",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fixed_tags = list(tags) if tags else None
        self.bio = check_bio_mode(bio)
        self._sentences: dict[str, list[Sentence]] | None = None
        self._tags: list[str] | None = None

    @property
    def class_names(self) -> list[str]:
        self._read()
        assert self._tags is not None
        return self._tags

    tag_names = class_names

    def _read(self) -> dict[str, list[Sentence]]:
        if self._sentences is not None:
            return self._sentences
        paths = {"train": self.train_path, "val": self.val_path, "test": self.test_path}
        if self.dataset:
            builtin = DATASETS.create(self.dataset)
            paths = {k: paths.get(k) or builtin.get(k) for k in ("train", "val", "test")}
        sents = {k: limit(read_tagged(p, self.encoding, self.bio), self.max_samples, self.seed) for k, p in paths.items() if p}
        self._sources = {k: str(p) for k, p in paths.items() if p}
        seen = sorted({t for _, tags, _ in sents["train"] for t in tags}, key=lambda t: (t != "O", t[2:], t))
        tags = self.fixed_tags or seen
        if "O" not in tags:
            tags = ["O"] + tags
        known = set(tags)
        for split, items in sents.items():
            for _, stags, line in items:
                bad = [t for t in stags if t not in known]
                if bad:
                    raise TextDataError(f"{self._sources[split]} line {line}: tag {bad[0]!r} never occurs in the training "
                                        f"data ({', '.join(tags)})")
        self._tags = tags
        self._sentences = sents
        return sents

    def _tokenize_words(self, items: list[Item], split: str) -> TokenizedSet:
        lookup = {t: k for k, t in enumerate(self._tags or [])}
        if not items:
            return TokenizedSet([])

        # a word the tokenizer reduces to nothing (U+3000, a no-break space) would lose its tag and shift the
        # spans of the words after it: it is read as the unknown token instead
        unk = self.tokenizer.unk_token or "[UNK]"
        words = [[w if w.strip() else unk for w in ws] for ws, *_ in items]

        def build() -> tuple[Ragged, dict[str, Any]]:
            enc = self.tokenizer(words, is_split_into_words=True, truncation=True,
                                 max_length=self.max_length, return_attention_mask=False)
            word_ids = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(items))]
            return {"input_ids": enc["input_ids"], "word_ids": word_ids}, {}

        arrays, _ = self._cached("tok", words, build)
        rows, cut = [], 0
        for i, (words, spans, text, tags, ident) in enumerate(items):
            wids = [None if w < 0 else w for w in arrays["word_ids"][i]]
            labels, firsts = align_labels(wids, [lookup[t] for t in tags] if tags is not None else None)
            kept = len(firsts)
            cut += kept < len(words)
            row = {"input_ids": arrays["input_ids"][i], "labels": labels, "id": ident, "text": text,
                   "word_spans": spans[:kept]}
            rows.append(row)
        self._report_truncation(split, cut, len(items), unit="sentences")
        return TokenizedSet(rows)

    def _predict_items(self) -> list[Item]:
        """One item per non-empty line of the ``predict`` file, split into words."""
        path = Path(self.predict_path)
        lines = read_text(path, self.encoding, TextDataError, expected="one sentence per line",
                          what="data.predict file").splitlines()
        items = []
        for no, line in enumerate(lines, start=1):
            words, spans = split_words(line)
            if words:
                items.append((words, spans, line, None, f"{path.name}:{no}"))
        if not items:
            raise TextDataError(f"{path} holds no text to tag")
        return items

    def setup(self, stage: str | None = None) -> None:
        sents = self._read()
        if not self.splits:
            train = sents["train"]
            parts = self._train_parts(len(train), sents)
            for split in ("train", "val", "test"):
                chosen = sents[split] if split in sents and split != "train" else [train[i] for i in parts[split]]
                source = Path(self._sources.get(split, self._sources["train"])).name
                items = []
                for words, tags, line in chosen:
                    text, spans = join_words(words)
                    items.append((words, spans, text, tags, f"{source}:{line}"))
                self.splits[split] = self._tokenize_words(items, split)
        if stage == "predict" and self.predict_path and "predict" not in self.splits:
            self.splits["predict"] = self._tokenize_words(self._predict_items(), "predict")


__all__ = ["TokenDataModule"]
