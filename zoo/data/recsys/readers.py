"""Reading interaction and item tables: file formats, column aliases, value checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from zoo.data.files import DataFileError, require_file
from zoo.errors import ZooError

USER_ALIASES = ("user_id", "userId", "user", "uid", "UserID")
ITEM_ALIASES = ("item_id", "movieId", "item", "iid", "ItemID", "MovieID")
RATING_ALIASES = ("rating", "score", "Rating")
TIME_ALIASES = ("timestamp", "time", "Timestamp", "ts")


class RecsysDataError(ZooError, ValueError):
    """Bad interaction data or options: the message names the file, row or flag and what was expected."""


class RecsysFileError(RecsysDataError, DataFileError):
    """A recommender data file that is missing or unreadable (zoo.data.files raises it for these readers)."""


class UnknownUserError(RecsysDataError):
    """``predict`` was asked about a user the model was not trained on."""


def _strip_atomic(df: pd.DataFrame) -> pd.DataFrame:
    return df.rename(columns={c: str(c).split(":", 1)[0] for c in df.columns})


def read_table(path: str | Path, fmt: str = "auto", sep: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read an interactions or items table as strings; returns (frame, detected format)."""
    path = require_file(path, RecsysFileError)
    # undecodable bytes are replaced, not refused: older MovieLens releases are Latin-1 and only feed item text
    if fmt == "auto":
        if path.suffix in (".inter", ".item", ".user"):
            fmt = "atomic"
        elif path.name == "u.data":
            fmt = "udata"
        elif path.suffix == ".parquet":
            fmt = "parquet"
        elif path.suffix in (".tsv", ".tab"):
            fmt, sep = "csv", sep or "\t"
        else:
            fmt = "csv"
    if fmt == "atomic":
        df = _strip_atomic(pd.read_csv(path, sep=sep or "\t", dtype=str, keep_default_na=False, na_values=[""],
                                       quoting=3, encoding="utf-8", encoding_errors="replace"))
    elif fmt == "udata":
        df = pd.read_csv(path, sep=sep or "\t", header=None, dtype=str, names=["user_id", "item_id", "rating", "timestamp"])
    elif fmt == "parquet":
        df = pd.read_parquet(path).astype(str)
    elif fmt == "csv":
        df = pd.read_csv(path, sep=sep or ",", dtype=str, keep_default_na=False, na_values=[""],
                         encoding="utf-8", encoding_errors="replace")
    else:
        raise RecsysDataError(f"data.format must be one of auto, csv, parquet, udata, atomic; got {fmt!r}")
    return df, fmt


def _pick_column(df: pd.DataFrame, wanted: str | None, aliases: Sequence[str], what: str, source: str,
                 required: bool) -> str | None:
    if wanted and wanted in df.columns:
        return wanted
    for alias in aliases:
        if alias in df.columns:
            return alias
    if required or wanted:
        raise RecsysDataError(f"{source}: no {what} column {wanted!r} (columns: {', '.join(map(str, df.columns))}); "
                              f"set data.{what}_column")
    return None


def standardise_interactions(raw: pd.DataFrame, source: str, user_column: str | None = None,
                             item_column: str | None = None, rating_column: str | None = None,
                             time_column: str | None = None) -> pd.DataFrame:
    """Columns ``user``, ``item`` (str), ``rating``, ``timestamp`` (float, NaN when absent) and ``row`` (the
    1-based data row in the source file, for error messages). NaN or non-numeric values stop with an error."""
    u = _pick_column(raw, user_column, USER_ALIASES, "user", source, True)
    i = _pick_column(raw, item_column, ITEM_ALIASES, "item", source, True)
    r = _pick_column(raw, rating_column, RATING_ALIASES, "rating", source, False)
    t = _pick_column(raw, time_column, TIME_ALIASES, "time", source, False)
    df = pd.DataFrame({"user": raw[u].astype(str).str.strip(), "item": raw[i].astype(str).str.strip()})
    missing_id = raw[u].isna() | raw[i].isna() | (df["user"] == "") | (df["item"] == "")
    if missing_id.any():
        row = int(np.flatnonzero(missing_id.to_numpy())[0]) + 1
        raise RecsysDataError(f"{source}: data row {row} has an empty user or item id")
    for name, col in (("rating", r), ("timestamp", t)):
        if col is None:
            df[name] = np.nan
            continue
        values = pd.to_numeric(raw[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise RecsysDataError(f"{source}: data row {row + 1} has {name} {raw[col].iloc[row]!r} in column {col!r}; "
                                  f"expected a finite number ({int(bad.sum())} such rows)")
        df[name] = values.to_numpy(dtype=float)
    df["row"] = np.arange(1, len(df) + 1)
    return df


def standardise_items(raw: pd.DataFrame, source: str, item_column: str | None = None,
                      text_columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Columns ``item`` (str) and ``text``: the text columns joined as ``col: value`` lines; genre lists
    (``|``-separated in ml-latest) are comma-separated."""
    i = _pick_column(raw, item_column, ITEM_ALIASES, "item", source, True)
    if text_columns:
        missing = [c for c in text_columns if c not in raw.columns]
        if missing:
            raise RecsysDataError(f"{source}: no text column(s) {missing} (columns: {', '.join(map(str, raw.columns))}); "
                                  "set data.item_text_columns")
        cols = list(text_columns)
    else:
        preferred = [c for c in ("movie_title", "title", "release_year", "year", "class", "genres", "genre", "description")
                     if c in raw.columns]
        cols = preferred or [c for c in raw.columns if c != i]
    text = pd.Series([""] * len(raw), index=raw.index)
    for c in cols:
        values = raw[c].fillna("").astype(str).str.replace("|", ", ", regex=False)
        label = {"movie_title": "title", "release_year": "year", "class": "genres"}.get(c, c)
        text = text + np.where(values != "", label + ": " + values + ". ", "")
    items = pd.DataFrame({"item": raw[i].astype(str).str.strip(), "text": text.str.strip()})
    return items.drop_duplicates("item", keep="first")
