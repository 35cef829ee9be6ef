"""Text data: sequence classification (``TextDataModule``) and token classification (``TokenDataModule``).

Tokenization happens once, in ``setup``, and is cached on disk (``cache_dir``) under a key made of the data's
content, the tokenizer's vocabulary and the settings, so a second run (or ``zoo test`` after ``zoo fit``) skips it.
Batches are padded to their own longest sequence, and training batches are drawn from length-sorted pools
("length-grouped") so short texts do not pay for long ones. Truncation at ``max_length`` is counted and logged.

Where things are: ``readers`` (tables, columns, labels), ``conll`` (CoNLL / IOB2 and JSONL tagged files),
``words`` (words, spans, sub-word label alignment), ``batching`` (dataset, sampler, collator), ``cache``
(tokenization cache), ``base`` (what both DataModules share), ``classification`` (``TextDataModule``),
``tokens`` (``TokenDataModule``), ``builtin`` (the offline corpora). Every public name is importable from
``zoo.data.text``.
"""

from zoo.data.text import builtin  # noqa: F401  (registers the built-in corpora)
from zoo.data.text.base import TextDataBase, log
from zoo.data.text.batching import DynamicPadCollator, LengthGroupedBatchSampler, TokenizedSet
from zoo.data.text.builtin import TaggedCorpus, TextCorpus, TextDatasetUnavailableError
from zoo.data.text.cache import CACHE_VERSION, load_ragged, save_ragged, tokenizer_fingerprint
from zoo.data.text.classification import TextDataModule
from zoo.data.text.conll import read_conll, read_tagged, read_token_jsonl, validate_bio
from zoo.data.text.ngrams import NgramTextDataModule
from zoo.data.text.readers import TextDataError, read_table
from zoo.data.text.tokens import TokenDataModule
from zoo.data.text.words import WORD_RE, align_labels, join_words, split_words

__all__ = [
    "CACHE_VERSION", "WORD_RE", "DynamicPadCollator", "LengthGroupedBatchSampler", "NgramTextDataModule",
    "TaggedCorpus", "TextCorpus",
    "TextDataBase", "TextDataError", "TextDataModule", "TextDatasetUnavailableError", "TokenDataModule",
    "TokenizedSet", "align_labels", "join_words", "load_ragged", "log", "read_conll", "read_table", "read_tagged",
    "read_token_jsonl", "save_ragged", "split_words", "tokenizer_fingerprint", "validate_bio",
]
