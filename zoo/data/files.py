"""Reading user files with zoo's errors: a missing file, undecodable text or an unparsable table becomes one
:class:`DataFileError` (of the caller's subclass) that names the file, where it broke and what was expected."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

PathLike = str | os.PathLike[str]


class DataFileError(ZooError, ValueError):
    """A user's data file that is missing or unreadable; the message names the file and what was expected."""


def require_file(path: PathLike, error: type[DataFileError] = DataFileError, what: str = "data file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    return path


def _raw_bytes(path: Path) -> bytes:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return fh.read()


def not_valid_text(path: PathLike, encoding: str, error: type[DataFileError] = DataFileError,
                   expected: str | None = None, setting: str | None = "--data.init_args.encoding") -> DataFileError:
    """The error for a file that does not decode as ``encoding``, naming the first bad line and byte.

    Readers (pandas, ``open``) report offsets into the chunk they were decoding, so the file is decoded again here
    to find the position in the whole file."""
    path = Path(path)
    where = ""
    try:
        raw = _raw_bytes(path)
        raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        where = f" (line {line}, byte {err.start}: {err.reason})"
    except (OSError, LookupError):
        pass
    fix = "re-save it as UTF-8" + (f" or set {setting} (e.g. latin-1)" if setting else "")
    what = f"; expected {expected}" if expected else ""
    return error(f"{path} is not valid {encoding} text{where}{what}; {fix}")


@contextmanager
def decoding(path: PathLike, encoding: str, error: type[DataFileError] = DataFileError,
             expected: str | None = None, setting: str | None = "--data.init_args.encoding") -> Iterator[None]:
    """Turn a ``UnicodeDecodeError`` raised while reading ``path`` into :func:`not_valid_text`'s error."""
    try:
        yield
    except UnicodeDecodeError:
        raise not_valid_text(path, encoding, error, expected, setting) from None


def read_text(path: PathLike, encoding: str = "utf-8", error: type[DataFileError] = DataFileError,
              expected: str | None = None, what: str = "data file",
              setting: str | None = "--data.init_args.encoding") -> str:
    path = require_file(path, error, what)
    with decoding(path, encoding, error, expected, setting):
        return path.read_text(encoding=encoding)


TABLE_SUFFIXES = {".csv": "csv", ".csv.gz": "csv", ".tsv": "tsv", ".tsv.gz": "tsv", ".jsonl": "jsonl",
                  ".jsonl.gz": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}


def duplicate_columns(header: Any) -> list[str]:
    """Header names given more than once (pandas would rename the second to ``name.1`` without a word)."""
    names = [str(h) for h in header]
    return sorted({h for h in names if names.count(h) > 1})


def check_header(path: PathLike, sep: str = ",", encoding: str = "utf-8",
                 error: type[Exception] = DataFileError) -> None:
    """Stop on a CSV header that names a column twice: which of the two a setting means would be a guess."""
    import pandas as pd

    try:
        first = pd.read_csv(path, nrows=1, header=None, dtype=str, sep=sep, encoding=encoding,
                            encoding_errors="replace")
    except (ValueError, pd.errors.ParserError):
        return  # empty or unparsable: the reader that follows says so
    dupes = duplicate_columns(first.iloc[0].tolist()) if len(first) else []
    if dupes:
        raise error(f"{path}: the header names column(s) {', '.join(map(repr, dupes))} more than once; "
                    "rename them so each column has its own name")


def read_table(path: PathLike, encoding: str = "utf-8", error: type[DataFileError] = DataFileError) -> Any:
    """CSV / TSV / JSONL / Parquet -> a pandas DataFrame of strings (no NaN guessing)."""
    import pandas as pd

    path = require_file(path, error)
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    kind = TABLE_SUFFIXES.get(suffix)
    if kind is None:
        raise error(f"{path}: unsupported file type {suffix!r}; expected .csv, .tsv, .jsonl or .parquet")
    try:
        with decoding(path, encoding, error, f"a {kind.upper()} table"):
            if kind in ("csv", "tsv"):
                check_header(path, "\t" if kind == "tsv" else ",", encoding, error)
                return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding,
                                   sep="\t" if kind == "tsv" else ",")
            if kind == "parquet":
                return pd.read_parquet(path)
            return pd.read_json(path, lines=kind == "jsonl", dtype=False, encoding=encoding)
    except ValueError as err:
        if isinstance(err, DataFileError):
            raise
        raise error(f"{path}: cannot parse as {suffix.lstrip('.')}: {err}") from None


__all__ = ["DataFileError", "check_header", "decoding", "duplicate_columns", "not_valid_text", "read_table",
           "read_text", "require_file"]
