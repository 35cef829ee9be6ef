"""``TokenDataModule``: token classification (NER) from CoNLL / IOB2 or JSONL tagged files or a built-in set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from zoo.data.checks.filtering import apply_row_filters
from zoo.data.files import read_text
from zoo.data.splits import limit
from zoo.data.text.base import TextDataBase
from zoo.data.text.batching import TokenizedSet
from zoo.data.text.cache import Ragged
from zoo.data.text.conll import Sentence, check_bio_mode, read_tagged
from zoo.data.text.long_text import budget, check_long_text, max_context_owners, word_windows
from zoo.data.text.readers import TextDataError
from zoo.data.text.word_level import featurised_rows, piece_vocabulary
from zoo.data.text.words import align_labels, join_words, split_words
from zoo.inference.word_features import WORDS, WordFeaturiser
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
        tokenizer: a Hugging Face tokenizer (``minilm`` or a local directory; see the shared arguments) or
            ``words``: word-level features for ``crf_tagger`` (a hashed id and hashed characters per word, and the
            word's pieces in the multilingual USE-m3 SentencePiece model); ``max_length`` then counts words.
        max_length: sub-word tokens per sentence (words with ``tokenizer: words``); words cut off are counted and
            logged.
        long_text: sentences longer than ``max_length``: ``truncate`` (words past it get no tag; the metrics
            count their entities as missed) or ``chunks``
            (overlapping windows of whole words; each window is a training example, and at validation, test and
            predict every word is read from the window where it has the most context, so each text keeps one
            tag per word). ``head_tail`` is for sequence classification only.
        chunk_overlap: tokens of whole words shared by consecutive windows at most (``chunks``; default a
            quarter of ``max_length``).
        max_chunks: windows per text at most (``chunks``); words past them get no tag and are counted.
        tokenizer, max_samples, fractions, batch sizes, ...: shared with classification data, see
            :class:`~zoo.data.text.base.TextDataBase`.
    """

    vocabulary_task = "token"
    #: which checks zoo inspect runs on it (zoo.data.checks)
    data_family = "token_classification"

    def __init__(
        self,
        tags: list[str] | None = None,
        bio: Literal["error", "repair"] = "error",
        long_text: str = "truncate",
        chunk_overlap: int | None = None,
        max_chunks: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if long_text == "head_tail":
            raise TextDataError("--data.init_args.long_text head_tail would leave the middle words of a sentence "
                                "untagged; "
                                "token classification takes truncate or chunks")
        self.chunk_overlap = check_long_text(long_text, chunk_overlap, max_chunks, self.max_length,
                                             allowed=("truncate", "chunks"))
        self.long_text, self.max_chunks = long_text, max_chunks
        self.fixed_tags = list(tags) if tags else None
        self.bio = check_bio_mode(bio)
        self._sentences: dict[str, list[Sentence]] | None = None
        self._tags: list[str] | None = None
        if self.tokenizer_name == WORDS:
            from zoo.backbones.usem3 import sentencepiece_model_path

            self._tokenizer = WordFeaturiser(sentencepiece_model_path())
        #: per split: (words, tags, row id) of each sentence, for the data checks (zoo.data.checks.tokens)
        self.tagged: dict[str, list[tuple[list[str], list[str], str]]] = {}

    @property
    def word_level(self) -> bool:
        """Whether the rows hold word-level features (``tokenizer: words``) rather than sub-word ids."""
        return isinstance(self._tokenizer, WordFeaturiser)

    def piece_vocabulary(self) -> list[int]:
        """Word-level data: the SentencePiece ids (+1) of the training split's words, for the model's rows."""
        if "train" not in self.splits:
            self.setup("fit")
        return piece_vocabulary(self.splits["train"].rows)

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
        sents = {k: limit(read_tagged(p, self.encoding, self.bio), self.max_samples, self.seed)
                 for k, p in paths.items() if p}
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
                    raise TextDataError(f"{self._sources[split]} line {line}: tag {bad[0]!r} never occurs in the "
                                        f"training data ({', '.join(tags)})")
        self._tags = tags
        self._sentences = sents
        return sents

    def _tokenize_words(self, items: list[Item], split: str) -> TokenizedSet:
        if not items:
            return TokenizedSet([])
        if self.word_level:
            return self._featurise(items, split)
        # a word the tokenizer reduces to nothing (U+3000, a no-break space) would lose its tag and shift the
        # spans of the words after it: it is read as the unknown token instead
        unk = self.tokenizer.unk_token or "[UNK]"
        words = [[w if w.strip() else unk for w in ws] for ws, *_ in items]
        if self.long_text == "chunks":
            return self._chunked_rows(items, words, split)

        def build() -> tuple[Ragged, dict[str, Any]]:
            enc = self.tokenizer(words, is_split_into_words=True, truncation=True,
                                 max_length=self.max_length, return_attention_mask=False)
            word_ids = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(items))]
            return {"input_ids": enc["input_ids"], "word_ids": word_ids}, {}

        arrays, _ = self._cached("tok", words, build)
        rows, cut = [], 0
        for i, (words, spans, text, tags, ident) in enumerate(items):
            tag_ids = self._tag_ids(tags)
            labels, firsts = align_labels(_word_ids(arrays["word_ids"][i]), tag_ids)
            kept = len(firsts)
            cut += kept < len(words)
            row = {"input_ids": arrays["input_ids"][i], "labels": labels, "id": ident, "text": text,
                   "word_spans": spans[:kept]}
            if split != "train" and tag_ids is not None:
                row.update(_cut_words(range(kept, len(words)), tag_ids, spans))
            rows.append(row)
        self._report_truncation(split, cut, len(items), unit="sentences")
        self._count_long_text(split, len(items), cut, len(items))
        return TokenizedSet(rows)

    def _featurise(self, items: list[Item], split: str) -> TokenizedSet:
        rows, counts = featurised_rows(self._tokenizer, items, self._tag_ids, split == "train", self.max_length,
                                       self.long_text, self.chunk_overlap, self.max_chunks)
        if self.long_text == "chunks":
            self._report_chunks(split, len(items), counts["longer"], counts["lost"], self.max_chunks,
                                unit="sentences")
        else:
            self._report_truncation(split, counts["lost"], len(items), unit="sentences")
        self._count_long_text(split, len(items), counts["longer"], counts["windows"])
        return TokenizedSet(rows)

    def _tag_ids(self, tags: list[str] | None) -> list[int] | None:
        lookup = {t: k for k, t in enumerate(self._tags or [])}
        return [lookup[t] for t in tags] if tags is not None else None

    def _chunked_rows(self, items: list[Item], words: list[list[str]], split: str) -> TokenizedSet:
        """Training: one row per window. Evaluation and predict: one row per text holding its ``windows``, where
        each word is labelled only in the window it is read from, so the model's outputs merge back into one
        per word (:func:`zoo.tasks.text.token.word_rows`)."""

        def build() -> tuple[Ragged, dict[str, Any]]:
            enc = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False, truncation=False,
                                 return_attention_mask=False, verbose=False)
            ids, wids, counts, longer, beyond = [], [], [], 0, 0
            keep = budget(self.tokenizer, self.max_length)
            for i, body in enumerate(enc["input_ids"]):
                wins, win_wids, dropped = word_windows(self.tokenizer, body, _word_ids(enc.word_ids(i), -1),
                                                       self.max_length, self.chunk_overlap, self.max_chunks)
                ids += wins
                wids += win_wids
                counts.append([len(wins)])
                longer += len(body) > keep
                beyond += dropped
            return ({"input_ids": ids, "word_ids": wids, "n_windows": counts},
                    {"longer": int(longer), "beyond_max_chunks": int(beyond)})

        arrays, extra = self._cached(f"tok-chunks-{self.chunk_overlap}-{self.max_chunks}", words, build)
        rows, at = [], 0
        for (k,), (_, spans, text, tags, ident) in zip(arrays["n_windows"], items):
            ids, wids = arrays["input_ids"][at:at + k], arrays["word_ids"][at:at + k]
            at += k
            rows += self._window_rows(ids, wids, self._tag_ids(tags), spans, text, ident, split == "train")
        self._report_chunks(split, len(items), int(extra["longer"]), int(extra["beyond_max_chunks"]),
                            self.max_chunks, unit="sentences")
        self._count_long_text(split, len(items), int(extra["longer"]), len(arrays["input_ids"]))
        return TokenizedSet(rows)

    @staticmethod
    def _window_rows(ids: list[list[int]], wids: list[list[int]], tags: list[int] | None,
                     spans: list[tuple[int, int]], text: str, ident: str, train: bool) -> list[dict[str, Any]]:
        if train:
            rows = []
            for win, ws in zip(ids, wids):
                labels, firsts = align_labels(_word_ids(ws), tags)
                rows.append({"input_ids": win, "labels": labels, "id": ident, "text": text,
                             "word_spans": [spans[ws[p]] for p in firsts]})
            return rows
        # windows advance on both edges, so a later word is never read from an earlier window than the word
        # before it: joining the windows' labelled positions in order gives the words in order
        owner = max_context_owners(wids)
        labels = []
        for j, ws in enumerate(wids):
            own, _ = align_labels(_word_ids(ws), tags)
            labels.append([lab if w >= 0 and owner.get(w) == j else -100 for lab, w in zip(own, ws)])
        row = {"input_ids": ids[0], "windows": ids, "window_labels": labels, "id": ident, "text": text,
               "word_spans": [spans[w] for w in sorted(owner)]}
        if tags is not None:  # words past max_chunks windows
            row.update(_cut_words([w for w in range(len(spans)) if w not in owner], tags, spans))
        return [row]

    def _predict_items(self) -> list[Item]:
        """One item per non-empty line of the ``predict`` file, split into words."""
        path = Path(self.predict_path)
        lines = read_text(path, self.encoding, TextDataError, expected="one sentence per line",
                          what="--data.init_args.predict file").splitlines()
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
                self.tagged[split] = [(words, tags, ident) for words, _, _, tags, ident in items]
                self.splits[split] = self._tokenize_words(items, split)
                if split == "train":  # the same vocabulary / script check as text classification
                    self.check_vocabulary([text for _, _, text, _, _ in items])
            apply_row_filters(self)
        if stage == "predict" and self.predict_path and "predict" not in self.splits:
            self.splits["predict"] = self._tokenize_words(self._predict_items(), "predict")


def _cut_words(cut: Any, tags: list[int], spans: list[tuple[int, int]]) -> dict[str, list[Any]]:
    """The gold tags and spans of the words the model does not see (past ``max_length`` or ``max_chunks``): the
    metrics count them as predicted ``O``, so an entity there is missed, not left out of the score."""
    cut = list(cut)
    return {"cut_tags": [tags[w] for w in cut], "cut_spans": [spans[w] for w in cut]}


def _word_ids(word_ids: list[int | None], none: int | None = None) -> list[Any]:
    """The tokenizer's word ids with special tokens as ``none`` (the cache stores -1, ``align_labels`` takes None)."""
    return [none if w is None or w < 0 else w for w in word_ids]


__all__ = ["TokenDataModule"]
