"""Reading interaction and item tables: file formats, column aliases, value checks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zoo.data.files import DataFileError, check_header, require_file
from zoo.errors import ZooError

USER_ALIASES = ("user_id", "userId", "user", "uid", "UserID")
ITEM_ALIASES = ("item_id", "movieId", "item", "iid", "ItemID", "MovieID")
RATING_ALIASES = ("rating", "score", "Rating")
TIME_ALIASES = ("timestamp", "time", "Timestamp", "ts")
#: the column shown as the item's name in predictions, first found wins
NAME_COLUMNS = ("movie_title", "title", "name", "item_name", "Title", "Name")


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
    chunks, fmt = iter_table(path, fmt, sep, None)
    return next(iter(chunks)), fmt


def iter_table(path: str | Path, fmt: str = "auto", sep: str | None = None,
               chunk_rows: int | None = None) -> tuple[Iterator[pd.DataFrame], str]:
    """The table as frames of strings of at most ``chunk_rows`` rows (CSV chunks, Parquet record batches; one frame
    when None), so a large log is never held as strings all at once; returns (frames, detected format)."""
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
    if fmt not in ("atomic", "udata", "parquet", "csv"):
        raise RecsysDataError(f"--data.init_args.format must be one of auto, csv, parquet, udata, atomic; got {fmt!r}")
    return _frames(path, fmt, sep, chunk_rows), fmt


def _frames(path: Path, fmt: str, sep: str | None, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
        if chunk_rows is None:
            yield table.read().to_pandas().astype(str)
            return
        for batch in table.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas().astype(str)
        return
    if fmt == "atomic":
        kwargs: dict[str, Any] = dict(sep=sep or "\t", keep_default_na=False, na_values=[""], quoting=3,
                                      encoding="utf-8", encoding_errors="replace")
    elif fmt == "udata":
        kwargs = dict(sep=sep or "\t", header=None, names=["user_id", "item_id", "rating", "timestamp"])
    else:
        kwargs = dict(sep=sep or ",", keep_default_na=False, na_values=[""], encoding="utf-8",
                      encoding_errors="replace")
    if fmt != "udata":
        check_header(path, kwargs["sep"], error=RecsysDataError)
    try:
        frames = pd.read_csv(path, dtype=str, chunksize=chunk_rows, **kwargs)
    except pd.errors.EmptyDataError:
        raise RecsysDataError(f"{path}: the file is empty; expected a header line and one interaction "
                              "per row") from None
    for df in [frames] if chunk_rows is None else frames:
        yield _strip_atomic(df) if fmt == "atomic" else df


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
                             time_column: str | None = None, first_row: int = 1) -> pd.DataFrame:
    """Columns ``user``, ``item`` (str), ``rating``, ``timestamp`` (float, NaN when absent) and ``row`` (the
    1-based data row in the source file, for error messages; ``first_row`` is that of ``raw``'s first row when it
    is a chunk of the file). NaN or non-numeric values stop with an error."""
    u = _pick_column(raw, user_column, USER_ALIASES, "user", source, True)
    i = _pick_column(raw, item_column, ITEM_ALIASES, "item", source, True)
    r = _pick_column(raw, rating_column, RATING_ALIASES, "rating", source, False)
    t = _pick_column(raw, time_column, TIME_ALIASES, "time", source, False)
    df = pd.DataFrame({"user": raw[u].astype(str).str.strip(), "item": raw[i].astype(str).str.strip()})
    missing_id = raw[u].isna() | raw[i].isna() | (df["user"] == "") | (df["item"] == "")
    if missing_id.any():
        row = int(np.flatnonzero(missing_id.to_numpy())[0]) + first_row
        raise RecsysDataError(f"{source}: data row {row} has an empty user or item id")
    for name, col in (("rating", r), ("timestamp", t)):
        if col is None:
            df[name] = np.nan
            continue
        values = pd.to_numeric(raw[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise RecsysDataError(f"{source}: data row {row + first_row} has {name} {raw[col].iloc[row]!r} "
                                  f"in column {col!r}; "
                                  f"expected a finite number ({int(bad.sum())} such rows)")
        df[name] = values.to_numpy(dtype=float)
    df["row"] = np.arange(first_row, first_row + len(df))
    return df


def standardise_items(raw: pd.DataFrame, source: str, item_column: str | None = None,
                      text_columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Columns ``item`` (str), ``text`` (the text columns joined as ``col: value`` lines; genre lists,
    ``|``-separated in ml-latest, are comma-separated) and ``name`` (the title / name column, "" without one).
    ``attrs["text_columns"]`` names the columns the text was built from."""
    i = _pick_column(raw, item_column, ITEM_ALIASES, "item", source, True)
    if text_columns:
        missing = [c for c in text_columns if c not in raw.columns]
        if missing:
            raise RecsysDataError(f"{source}: no text column(s) {missing} "
                                  f"(columns: {', '.join(map(str, raw.columns))}); "
                                  "set --data.init_args.item_text_columns")
        cols = list(text_columns)
    else:
        preferred = [c for c in ("movie_title", "title", "release_year", "year", "class", "genres", "genre",
                                 "description") if c in raw.columns]
        cols = preferred or [c for c in raw.columns if c != i]
    text = pd.Series([""] * len(raw), index=raw.index)
    for c in cols:
        values = raw[c].fillna("").astype(str).str.replace("|", ", ", regex=False)
        label = {"movie_title": "title", "release_year": "year", "class": "genres"}.get(c, c)
        text = text + np.where(values != "", label + ": " + values + ". ", "")
    name_col = next((c for c in NAME_COLUMNS if c in raw.columns), None)
    names = raw[name_col].fillna("").astype(str).str.strip() if name_col else ""
    items = pd.DataFrame({"item": raw[i].astype(str).str.strip(), "text": text.str.strip(), "name": names})
    items = items.drop_duplicates("item", keep="first")
    items.attrs["text_columns"] = cols
    return items


def item_text_summary(item_ids: Sequence[str], texts: Sequence[str], columns: Sequence[str], source: str,
                      examples: int = 3) -> tuple[list[str], str | None]:
    """What a user should see of the item text a recommender builds: (info lines with the columns used and a
    few examples, a warning naming the items whose text is empty or None)."""
    lines = [f"{source}: item text from column(s) {', '.join(map(str, columns))}, e.g."]
    lines += [f"  {it!r}: {text[:120]!r}" for it, text in list(zip(item_ids, texts))[:examples]]
    empty = [it for it, text in zip(item_ids, texts) if not text]
    warning = None
    if empty:
        warning = (f"{source}: {len(empty)} of {len(item_ids)} item(s) have an empty text (all of "
                   f"{', '.join(map(str, columns))} blank), e.g. {empty[:5]}; text-aware models see only their ID")
    return lines, warning
