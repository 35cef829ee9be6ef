import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import logging  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """Each test runs in its own folder, so runs/ and lightning_logs/ never land in the repo."""
    monkeypatch.chdir(tmp_path)
    yield


def _plain_stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger()] + [lg for lg in logging.root.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    # type() is: pytest's own capture handlers are subclasses and must be left alone
    return [h for lg in loggers for h in lg.handlers if type(h) is logging.StreamHandler]


@pytest.fixture(autouse=True)
def _log_handlers_follow_the_test_stderr():
    """Lightning (imported lazily by `zoo`) and torch give their loggers a StreamHandler on the sys.stderr of the
    moment of import: inside a test that is a capture closed afterwards, and later tests would print
    "--- Logging error ---" tracebacks. Point them at each test's stderr, then back at the real one."""
    for handler in _plain_stream_handlers():
        handler.stream = sys.stderr  # not setStream: it flushes the old stream, which may be closed
    yield
    for handler in _plain_stream_handlers():
        handler.stream = sys.__stderr__
