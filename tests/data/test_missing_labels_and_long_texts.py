"""Text rows without a label are refused with the row, or left out and counted with ``data.missing_label: drop``;
texts longer than ``data.max_chars`` are cut and counted (docs/reliability.md)."""

from __future__ import annotations

import pytest

from zoo.data.text import TextDataModule
from zoo.data.text.readers import TextDataError

ROWS = "text,label\ngood day,pos\nbad day,neg\nmeh,NaN\nok,None\nso so,\nlong " + "y" * 50 + ",pos\n"


def test_missing_labels_are_refused_with_the_row_or_dropped_and_counted(tmp_path, capsys):
    path = tmp_path / "rows.csv"
    path.write_text(ROWS)
    with pytest.raises(TextDataError, match=r"rows\.csv row 3: missing label 'NaN'.*data\.missing_label: drop"):
        TextDataModule(train=str(path))._read_file(str(path))
    table = TextDataModule(train=str(path), missing_label="drop")._read_file(str(path))
    assert table["labels"] == [["pos"], ["neg"], ["pos"]] and table["id"] == ["rows.csv:1", "rows.csv:2", "rows.csv:6"]
    assert "left out 3 row(s) without a label" in capsys.readouterr().err
    with pytest.raises(TextDataError, match="missing_label must be one of error, drop"):
        TextDataModule(train=str(path), missing_label="keep")._read_file(str(path))


def test_texts_over_max_chars_are_cut_and_counted(tmp_path, capsys):
    path = tmp_path / "rows.csv"
    path.write_text(ROWS)
    table = TextDataModule(train=str(path), missing_label="drop", max_chars=20)._read_file(str(path))
    assert [len(t) for t in table["text"]] == [8, 7, 20]
    assert "cut 1 text(s) of column 'text' to data.max_chars=20 characters" in capsys.readouterr().err
    with pytest.raises(TextDataError, match="max_chars must be >= 1"):
        TextDataModule(train=str(path), max_chars=0)
