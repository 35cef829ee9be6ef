"""Interaction data for recommenders: ``InteractionDataModule`` and its parts, split by role.

Sources (exactly one of ``path`` or ``dataset``):

* a CSV / TSV / Parquet file with configurable ``user_column`` / ``item_column`` / ``rating_column`` /
  ``time_column`` (common MovieLens names such as ``userId`` / ``movieId`` are recognised automatically);
* MovieLens ``u.data`` (tab separated, no header: user, item, rating, timestamp) and ml-latest ``ratings.csv``;
* RecBole atomic files (``.inter``; the ``name:type`` header suffixes are stripped);
* a built-in dataset (``ml-100k`` from the installed ``recbole`` package, ``synthetic_interactions``).

Item descriptions (for the text-aware model) come from ``items_path``: a RecBole ``.item`` file, an ml-latest
``movies.csv`` (``title`` + ``genres``) or any CSV with the item column and text columns.

Processing, in order: value checks (NaN / non-numeric ratings and duplicate rows stop with a
:class:`RecsysDataError` naming file and row), implicit threshold, k-core filtering, id maps, seeded split.
Item indices start at 1; index 0 is padding (SASRec) and is never recommended.

Splits (per user, as RecBole's ``group_by: user``):

* ``random``: random order, then ratio split (``split_ratios``, RecBole's 8:1:1 default and its rounding);
* ``temporal``: chronological order, then the same ratio split (the newest interactions are held out);
* ``loo``: leave-one-out by time: the last interaction is the test item, the one before it the validation item;
* ``column``: a ``split`` column with values train / val / test decides (used to share a split with RecBole).

A user left without a validation or test item (too few interactions) is, with ``empty_split: skip`` (default),
simply not evaluated on that split, as RecBole does; ``empty_split: error`` stops and names the user.

Modules: :mod:`~zoo.data.recsys.readers` (files, column aliases, value checks), :mod:`~zoo.data.recsys.builtin`
(ml-100k, synthetic), :mod:`~zoo.data.recsys.processing` (duplicates, k-core, splits), :mod:`~zoo.data.recsys.csr`
(per-user item lists), :mod:`~zoo.data.recsys.batches` (what the loaders yield, :class:`BatchSpec`),
:mod:`~zoo.data.recsys.datamodule`. Every name is re-exported here (``zoo.data.recsys.InteractionDataModule``).
"""

from zoo.data.recsys.batches import (
    EVAL_BLOCK_CELLS,
    EVAL_CACHE_BYTES,
    BatchCache,
    BatchSpec,
    EvalBatches,
    EvalView,
    PairBatches,
    SequenceBatches,
    UserBatches,
    rank_shard,
)
from zoo.data.recsys.builtin import ml_100k, recbole_dataset_dir, synthetic_interactions, synthetic_log
from zoo.data.recsys.csr import CSR, concat_csr
from zoo.data.recsys.datamodule import InteractionDataModule
from zoo.data.recsys.processing import (
    SPLITS,
    STAGE_INDEX,
    assign_split,
    handle_duplicates,
    k_core,
    ratio_split_counts,
)
from zoo.data.recsys.readers import (
    ITEM_ALIASES,
    RATING_ALIASES,
    TIME_ALIASES,
    USER_ALIASES,
    RecsysDataError,
    RecsysFileError,
    UnknownUserError,
    read_table,
    standardise_interactions,
    standardise_items,
)

__all__ = ["CSR", "EVAL_BLOCK_CELLS", "EVAL_CACHE_BYTES", "ITEM_ALIASES", "RATING_ALIASES", "SPLITS", "STAGE_INDEX",
           "TIME_ALIASES", "USER_ALIASES", "BatchCache", "BatchSpec", "EvalBatches", "EvalView",
           "InteractionDataModule", "PairBatches", "RecsysDataError", "RecsysFileError", "SequenceBatches",
           "UnknownUserError", "UserBatches", "assign_split", "concat_csr", "handle_duplicates", "k_core", "ml_100k",
           "rank_shard", "ratio_split_counts", "read_table", "recbole_dataset_dir", "standardise_interactions",
           "standardise_items", "synthetic_interactions", "synthetic_log"]
