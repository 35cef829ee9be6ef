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


#: cells that mean "no label" (pandas, spreadsheets and JSON write them so): never a class of their own
MISSING_LABELS = ("", "nan", "none", "null")
MISSING_LABEL_CHOICES = ("error", "drop")


def label_values(values: list[Any], path: Any, column: str, separator: str | None,
                 missing: str = "error") -> list[list[str] | None]:
    """Each cell as a list of labels: one label, or several split on ``separator`` (multi-label), or a list cell
    (JSONL / Parquet). A single-label cell that is empty or says NaN / None / null is refused with its row, or
    is None with ``missing="drop"`` (``data.missing_label``)."""
    if missing not in MISSING_LABEL_CHOICES:
        raise TextDataError(f"--data.init_args.missing_label must be one of {', '.join(MISSING_LABEL_CHOICES)}, "
                            f"got {missing!r}")
    out: list[list[str] | None] = []
    for i, v in enumerate(values):
        if isinstance(v, list | tuple | np.ndarray):
            labels = [str(x).strip() for x in v]
        else:
            s = _cell(v).strip()
            labels = [x.strip() for x in s.split(separator)] if separator else [s]
            labels = [x for x in labels if x] if separator else labels
        if not separator and labels[0].lower() in MISSING_LABELS:
            if missing == "drop":
                out.append(None)
                continue
            what = "empty label" if not labels[0] else f"missing label {labels[0]!r}"
            raise TextDataError(f"{path} row {i + 1}: {what} in column {column!r}; fill it, remove the row, or set "
                                "data.missing_label: drop to leave such rows out")
        out.append(labels)
    return out


def capped_texts(texts: list[str], max_chars: int | None, path: Any, column: str) -> list[str]:
    """Texts cut to ``max_chars`` characters (``data.max_chars``), with one line saying how many were cut: a
    200 MB row would otherwise be tokenized whole."""
    if not max_chars:
        return texts
    long = sum(len(t) > max_chars for t in texts)
    if long:
        import sys

        print(f"zoo: {path}: cut {long} text(s) of column {column!r} to data.max_chars={max_chars} characters",
              file=sys.stderr)
    return [t[:max_chars] for t in texts] if long else texts


__all__ = ["MISSING_LABELS", "TextDataError", "capped_texts", "column", "label_values", "read_table", "text_values"]
