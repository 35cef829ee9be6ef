"""Messages of the libraries under zoo that a zoo user can do nothing about, silenced for ``zoo`` commands.

Each entry says why it goes. Warnings a user can act on (a metric not found, a data loader with too few
workers, a checkpoint that does not match, truncation of long texts) are left alone: only these exact
messages are dropped, matched by their text.
"""

from __future__ import annotations

import logging
import re
import warnings

#: ``warnings`` messages (regular expressions matched from the start of the message)
WARNINGS: dict[str, str] = {
    # zoo hands its own argv to LightningCLI on purpose: the dispatcher has already taken the command name
    r"LightningCLI's args parameter is intended to run from within Python": "caused by zoo's dispatcher",
    # torch deprecated LeafSpec; Lightning's own _pytree still checks it: nothing for a user to change
    r".*isinstance\(treespec, LeafSpec\)": "inside Lightning",
    # peft reads transformers' deprecated property while wrapping the encoder
    r".*`?is_gradient_checkpointing`? is deprecated": "inside peft / transformers",
    # every resume into zoo's new version_N folder changes the checkpoint folder by design
    r"The dirpath has changed from": "caused by zoo's run folders",
    # the model summary's size estimate under bf16/16-mixed: an estimate, not a problem
    r"Precision .* is not supported by the model summary": "inside Lightning's model summary",
    # zoo adds OnExceptionCheckpoint to every fit, which makes Lightning try ckpt_path="last" of the (new, empty)
    # Trainer; zoo resolves resuming itself (--resume), before the Trainer exists
    r"`\.fit\(ckpt_path=None\)` was called without a model": "caused by zoo's OnExceptionCheckpoint",
    r'\.fit\(ckpt_path="last"\) is set, but there is no last checkpoint available':
        "caused by zoo's OnExceptionCheckpoint",
    # test / predict run without fit's RunState and LastCheckpoint on purpose: they restore nothing there
    r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint": "fit-only zoo callbacks",
    # the recommenders' training loaders yield whole batches from an IterableDataset in the main process
    # (num_workers 0, zoo.data.recsys.batches), so its __len__ is exact; the length is what Lightning's progress
    # bar, limit_train_batches and the schedulers' step count read, so it stays
    r"Your `IterableDataset` has `__len__` defined": "caused by zoo's recommender loaders, exact there",
    # a fit that ends before its first validation: zoo says in its own line that no best.ckpt was written and why
    # (zoo.callbacks.card.no_best_line); Lightning's hint to call log(...) does not apply to zoo's tasks
    r"`ModelCheckpoint\(monitor=.*could not find the monitored key": "replaced by zoo's no-best.ckpt line",
}

#: Lightning's ``rank_zero_info`` lines (logged, not warned)
LOG_LINES: dict[str, str] = {
    r"💡 Tip: For seamless cloud": "advertisements for litlogger / litmodels",
    r"Ignoring `Trainer\(max_time=\.\.\.\)`, callbacks list already contains a Timer": "the recipe's Timer wins",
    r"Loading `train_dataloader` to estimate number of stepping batches": "zoo's schedulers ask for it",
}

_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                      "lightning_fabric.utilities.rank_zero")


class _DropLines(logging.Filter):
    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


_FILTER = _DropLines(list(LOG_LINES))


def silence_noise() -> None:
    """Install the filters (idempotent): for the ``warnings`` module of this process and Lightning's loggers."""
    for pattern in WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


__all__ = ["LOG_LINES", "WARNINGS", "silence_noise"]
