"""What text DataModules share: options and their checks, the tokenizer, the tokenization cache, the
train / val / test split of a training file, and the dataloaders (length-grouped, dynamically padded)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from zoo.data.distributed import eval_sampler
from zoo.data.loaders import SplitLoaders, train_loader
from zoo.data.splits import conflicting_split_options, split_indices
from zoo.data.text.batching import DynamicPadCollator, LengthGroupedBatchSampler, TokenizedSet
from zoo.data.text.cache import Ragged, cached, default_cache_dir
from zoo.data.text.readers import TextDataError
from zoo.distributed import is_distributed
from zoo.registry import DATASETS

log = logging.getLogger("zoo.data.text")


class TextDataBase(SplitLoaders, pl.LightningDataModule):
    """Base of :class:`TextDataModule` and :class:`TokenDataModule` (which take these arguments through
    ``**kwargs``: one signature, shown by ``--data.help``); subclasses read their files and tokenize.

    Args:
        train / val / test: files; without val / test, random (stratified where labels allow) splits of ``train``.
        dataset: a built-in dataset instead of ``train`` (``zoo list datasets``).
        predict: a file for ``zoo predict``; default is the test split.
        tokenizer: registered text backbone (``minilm``) or local HF directory; use the model's encoder.
        max_length: tokens per text (pairs: both together); longer texts are truncated and counted.
        max_samples: use a deterministic random subset of this many rows from each file (quick runs).
        val_fraction / test_fraction: shares of ``train`` cut for validation / test when no file is given.
        batch_size / eval_batch_size: per device; evaluation defaults to ``batch_size``.
        group_by_length: length-grouped batches (dynamic padding is always on).
        num_workers: DataLoader workers.
        encoding: text encoding of the files.
        cache_dir: tokenization cache (default ``$ZOO_CACHE/text`` or ``~/.cache/zoo/text``).
        seed: seed of the splits, subsets and shuffling.
        dedupe: ``none``, ``within`` (drop repeated texts within a split) or ``across`` (also val / test texts
            seen in an earlier split); reported (docs/data-checks.md).
        exclude_rows: a file of row ids to drop (one a line, or a CSV with a ``row`` column: label_issues.csv).
    """

    #: what the vocabulary check recommends models for: ``classification`` or ``token`` (entities)
    vocabulary_task = "classification"

    def __init__(self, *, train: str | None = None, val: str | None = None, test: str | None = None,
                 dataset: str | None = None, predict: str | None = None, tokenizer: str = "minilm",
                 max_length: int = 128, max_samples: int | None = None, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, batch_size: int = 32, eval_batch_size: int | None = None,
                 group_by_length: bool = True, num_workers: int = 0, encoding: str = "utf-8",
                 cache_dir: str | None = None, seed: int = 42, dedupe: str = "none",
                 exclude_rows: str | None = None) -> None:
        super().__init__()
        # here rather than in each subclass: Lightning collects the arguments of every __init__ on the way down
        # from this call, so the hyper-parameters hold the subclass's own arguments and these
        self.save_hyperparameters()
        if max_length < 8:
            raise TextDataError(f"--data.init_args.max_length must be >= 8, got {max_length}")
        if bool(train) == bool(dataset):
            raise TextDataError("give exactly one of --data.init_args.train (a file) or --data.init_args.dataset "
                                "(a built-in name)")
        conflict = conflicting_split_options({"val": "val" if val else None, "test": "test" if test else None},
                                             {"val": (val_fraction, 0.1), "test": (test_fraction, 0.2)})
        if conflict:
            raise TextDataError(conflict)
        for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= frac < 1.0:
                raise TextDataError(f"--data.init_args.{name} must be in [0, 1), got {frac}")
        if max_samples is not None and max_samples < 4:
            raise TextDataError(f"--data.init_args.max_samples must be >= 4, got {max_samples}")
        self.train_path, self.val_path, self.test_path, self.predict_path = train, val, test, predict
        self.dataset = dataset
        self.tokenizer_name = tokenizer
        self.max_length = max_length
        self.max_samples = max_samples
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.group_by_length = group_by_length
        self.num_workers = num_workers
        self.encoding = encoding
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.seed = seed
        from zoo.data.checks.filtering import check_row_options

        check_row_options(dedupe, exclude_rows)
        self.dedupe, self.exclude_rows = dedupe, exclude_rows
        #: rows dropped per split by dedupe / exclude_rows
        self.dropped_rows: dict[str, int] = {}
        self._tokenizer: Any = None
        self.splits: dict[str, TokenizedSet] = {}
        self.truncated: dict[str, int] = {}
        #: figures of the data checks (vocabulary fit, long texts) for the run report (``data_checks.json``)
        self.data_checks: dict[str, Any] = {}
        #: ``truncate`` or ``chunks`` (set by the subclass that reads ``data.long_text``)
        self.long_text = "truncate"
        #: per split: texts, how many were longer than max_length, windows made (for the run report)
        self.long_text_counts: dict[str, dict[str, int]] = {}
        if dataset:
            DATASETS.entry(dataset)  # an unknown name fails now, listing close matches

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from zoo.backbones.text import load_tokenizer

            self._tokenizer = load_tokenizer(self.tokenizer_name)
        return self._tokenizer

    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def _cached(self, kind: str, content: Any, build: Callable[[], tuple[Ragged, dict[str, Any]]]
                ) -> tuple[Ragged, dict[str, Any]]:
        return cached(self.cache_dir, kind, self.max_length, self.tokenizer, content, build)

    def _train_parts(self, labels: Sequence[Any] | int, given: Container[str]) -> dict[str, np.ndarray]:
        """Indices of the training rows that make each split; a split ``given`` as its own file is not cut."""
        return split_indices(labels, 0.0 if "val" in given else self.val_fraction, self.test_fraction, self.seed,
                             test_index=[] if "test" in given else None)

    def check_vocabulary(self, texts: Sequence[str]) -> None:
        """The vocabulary figures of the training texts into :attr:`data_checks`; one warning when the encoder's
        vocabulary does not fit them (:mod:`zoo.data.text.vocabulary`)."""
        from zoo.data.text.vocabulary import recommended_models, vocabulary_report, vocabulary_warning

        if "vocabulary" in self.data_checks or not texts or not callable(self.tokenizer):
            return  # (not callable: ``tokenizer: words`` hashes words and characters, no fixed vocabulary to miss)
        report = vocabulary_report(self.tokenizer, texts, self.max_length)
        message = vocabulary_warning(report, self.tokenizer_name, self.vocabulary_task)
        if message:
            report["recommended_models"] = recommended_models(report, self.vocabulary_task)
        self.data_checks["vocabulary"] = report
        if message:
            log.warning(message)

    def _count_long_text(self, split: str, texts: int, longer: int, windows: int) -> None:
        self.long_text_counts[split] = {"texts": texts, "longer_than_max_length": longer, "windows": windows}
        self.data_checks["long_text"] = {"mode": self.long_text, **self.long_text_counts}

    def _report_chunks(self, split: str, total: int, longer: int, beyond: int, max_chunks: int,
                       unit: str = "texts") -> None:
        """``long_text: chunks``: long texts are split into windows, not cut, so only the ends past ``max_chunks``
        windows are lost and count as truncated."""
        self.truncated[split] = beyond
        if longer:
            log.info("zoo: %s split: %d of %d %s are longer than max_length=%d tokens and were split into windows",
                     split, longer, total, unit, self.max_length)
        if beyond:
            log.warning("zoo: %s split: %d %s are longer than max_chunks=%d windows; their ends get no prediction",
                        split, beyond, unit, max_chunks)

    def _report_truncation(self, split: str, truncated: int, total: int, unit: str = "texts") -> None:
        self.truncated[split] = truncated
        if truncated:
            log.warning("zoo: %s split: %d of %d %s (%.1f%%) are longer than max_length=%d tokens and were truncated; "
                        "%s", split, truncated, total, unit, 100.0 * truncated / max(total, 1), self.max_length,
                        self.truncation_advice())

    def truncation_advice(self) -> str:
        """What reads the part of a long text that truncation cuts, from this data's own settings."""
        if getattr(self, "text_pair_column", None):  # windows work on single texts only
            return f"raise --data.init_args.max_length (now {self.max_length}) to read more of each pair"
        return (f"--data.init_args.long_text chunks reads all of it (windows of {self.max_length} tokens, "
                "--data.init_args.max_chunks of them at most)")

    def split_loader(self, name: str, train: bool, grouped: bool = True) -> DataLoader:
        if name not in self.splits:
            self.setup("predict" if name == "predict" else "fit")
        ds = self.splits.get(name)
        if ds is None or len(ds) == 0:
            raise TextDataError(f"the {name} split is empty; give --data.init_args.{name} or raise "
                                f"--data.init_args.{name}_fraction")
        collate = DynamicPadCollator(self.pad_token_id())
        bs = self.batch_size if train else self.eval_batch_size
        common = dict(collate_fn=collate, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
        # Lightning shards plain samplers across ranks but cannot rebuild a custom batch sampler, so under DDP the
        # loaders fall back to shuffled batches (still dynamically padded)
        if self.group_by_length and grouped and not is_distributed():
            sampler = LengthGroupedBatchSampler(ds.lengths, bs, shuffle=train, seed=self.seed,
                                                drop_last=train and len(ds) > bs)
            if train:  # resumable: a resumed run continues mid-epoch with the same batches
                return train_loader(ds, batch_sampler=sampler, **common)
            return DataLoader(ds, batch_sampler=sampler, **common)
        if not train:
            # unpadded DDP shards: each sample evaluated once (Lightning's DistributedSampler repeats some)
            return DataLoader(ds, batch_size=bs, sampler=eval_sampler(ds), **common)
        return train_loader(ds, batch_size=bs, shuffle=True, drop_last=len(ds) > bs, **common)

    def predict_dataloader(self) -> DataLoader:
        # plain order: Lightning rebuilds batch samplers for predict, and rows come out in input order
        if self.predict_path and "predict" not in self.splits:
            self.setup("predict")
        return self.split_loader("predict" if "predict" in self.splits else "test", train=False, grouped=False)


__all__ = ["TextDataBase"]
