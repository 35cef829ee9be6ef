"""Reading labelled text tables: columns by name, non-empty texts, single- or multi-label cells."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from zoo.data import files
from zoo.data.files import DataFileError


class TextDataError(DataFileError):
    """Bad text input: the message names the file, row or option and what was expected."""


def read_table(path: str | os.PathLike[str], encoding: str = "utf-8") -> Any:
    """CSV / TSV / JSONL / Parquet -> a pandas DataFrame of strings (no NaN guessing)."""
    return files.read_table(path, encoding, TextDataError)


def column(frame: Any, name: str, path: Any, flag: str) -> list[Any]:
    """The values of column ``name``; a missing column names the ``data.<flag>`` option that picks it."""
    if name not in frame.columns:
        raise TextDataError(f"{path}: missing column {name!r} (set --data.init_args.{flag}); found columns: "
                            f"{', '.join(map(str, frame.columns)) or 'none'}")
    return frame[name].tolist()


def _cell(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def text_values(values: list[Any], path: Any, column: str) -> list[str]:
    out = []
    for i, v in enumerate(values):
        s = _cell(v)
        if not s.strip():
            raise TextDataError(f"{path} row {i + 1}: empty text in column {column!r}; remove the row or fill it")
        out.append(s)
    return out


def label_values(values: list[Any], path: Any, column: str, separator: str | None) -> list[list[str]]:
    """Each cell as a list of labels: one label, or several split on ``separator`` (multi-label), or a list cell
    (JSONL / Parquet)."""
    out = []
    for i, v in enumerate(values):
        if isinstance(v, list | tuple | np.ndarray):
            labels = [str(x).strip() for x in v]
        else:
            s = _cell(v).strip()
            labels = [x.strip() for x in s.split(separator)] if separator else [s]
            labels = [x for x in labels if x] if separator else labels
        if not separator and not labels[0]:
            raise TextDataError(f"{path} row {i + 1}: empty label in column {column!r}")
        out.append(labels)
    return out


__all__ = ["TextDataError", "column", "label_values", "read_table", "text_values"]
