"""Property tests: generated CSV rows, YAML text, image bytes, checkpoint bytes and flag values reach zoo's readers
and the CLI parser, and the only failures that come out are zoo's clean errors (ZooError, or the parser's exit
code 2), never an exception from inside pandas, PIL, torch or YAML. Few examples each (``max_examples``) so the
file stays within seconds."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo.errors import ZooError

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


def csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


@FAST
@given(header=st.lists(CELL, min_size=0, max_size=4), rows=st.lists(st.lists(CELL, max_size=5), max_size=6),
       raw=st.binary(max_size=64), use_raw=st.booleans())
def test_tables_read_or_fail_cleanly(tmp_path, header, rows, raw, use_raw):
    from zoo.data.files import read_table

    path = tmp_path / "t.csv"
    path.write_bytes(raw if use_raw else csv_text([header, *rows]).encode())
    try:
        read_table(path)
    except ZooError:
        pass


@FAST
@given(rows=st.lists(st.tuples(CELL, CELL, st.one_of(CELL, st.floats(allow_nan=True).map(str))), min_size=1,
                     max_size=8),
       header=st.sampled_from([["user_id", "item_id", "rating"], ["user", "item", "rating"], ["a", "b", "c"],
                               ["user_id", "user_id", "rating"]]))
def test_interaction_files_read_or_fail_cleanly(tmp_path, rows, header):
    from zoo.data.recsys.readers import read_table, standardise_interactions

    path = tmp_path / "inter.csv"
    path.write_text(csv_text([header, *map(list, rows)]), encoding="utf-8")
    try:
        raw, _ = read_table(path)
        standardise_interactions(raw, str(path))
    except ZooError:
        pass


@FAST
@given(data=st.binary(max_size=200), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a"]))
def test_image_bytes_load_or_fail_cleanly(tmp_path, data, prefix):
    from zoo.data.image.readers import check_image_files, load_image_file

    path = tmp_path / "x.png"
    path.write_bytes(prefix + data)
    try:
        check_image_files([str(path)], "generated")
        load_image_file(path, 1)
    except ZooError:
        pass


@FAST
@given(data=st.binary(max_size=300), zipped=st.booleans())
def test_checkpoint_bytes_are_refused_cleanly(tmp_path, data, zipped):
    from zoo.checkpoints import peek

    path = tmp_path / "x.ckpt"
    path.write_bytes((b"PK\x03\x04" if zipped else b"") + data)
    try:
        peek(path)
    except ZooError:
        pass


@pytest.mark.slow
@FAST
@given(text=st.text(max_size=80))
def test_yaml_text_is_valid_or_named_with_its_line(tmp_path, text):
    from zoo.cli.resume import check_config_files

    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        check_config_files(["fit", "--config", str(path)])
    except ZooError as err:
        assert str(path) in str(err)


SHAPES = """model:
  class_path: image_classifier
  init_args: {backbone: small_cnn, backbone_kwargs: {width: 4}}
data:
  class_path: image
  init_args: {dataset: synthetic_shapes, dataset_kwargs: {n: 30}, augment: null, image_size: null}
trainer: {max_steps: 1, accelerator: cpu, enable_progress_bar: false}
"""


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(["--trainer.max_epochs", "--trainer.max_steps", "--data.init_args.batch_size",
                             "--model.init_args.lr", "--model.init_args.warmup_ratio"]),
       value=st.one_of(st.integers(max_value=-2).map(str), st.text(alphabet="abcxyz-.%", min_size=1, max_size=6),
                       st.sampled_from(["0", "-1e9", "nan", "[]", "{}"])))
def test_cli_parser_gives_exit_code_2_for_bad_values(tmp_path, capsys, flag, value):
    from zoo.cli import main

    recipe = Path(tmp_path / "shapes.yaml")
    recipe.write_text(SHAPES)
    try:
        code = main(["fit", "--config", str(recipe), f"{flag}={value}"])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    if code == 0:  # a value the CLI accepts (e.g. max_steps 0): then it must have run cleanly
        return
    assert code == 2 and "Traceback" not in err, err[-2000:]
