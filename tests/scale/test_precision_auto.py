"""``precision: auto`` (every shipped recipe's): bf16-mixed where the hardware has bf16, 32-true elsewhere, one
line saying which and why; an explicit bf16-mixed on a CPU without bf16 instructions warns. The CPU is faked by
its flag set, so the CPU without bf16 is tested on any machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import zoo.scale
from zoo.cli import main
from zoo.scale import cpu_flags, resolve_precision

REPO = Path(__file__).resolve().parents[2]
AVX2_ONLY = {"fpu", "sse4_2", "avx", "avx2", "fma"}


@pytest.mark.parametrize("flags, expected", [(AVX2_ONLY, "32-true"), (AVX2_ONLY | {"avx512f", "avx512_bf16"},
                                              "bf16-mixed"), (AVX2_ONLY | {"amx_bf16", "amx_tile"}, "bf16-mixed")])
def test_auto_follows_the_cpu_flags_and_says_why(flags, expected):
    value, line = resolve_precision("auto", "cpu", flags=flags)
    assert value == expected
    assert line.startswith(f"precision auto: {expected}")
    assert ("no bf16 instructions" in line) == (expected == "32-true")


def test_explicit_bf16_on_a_cpu_without_bf16_warns_with_the_measured_slowdown():
    value, line = resolve_precision("bf16-mixed", "cpu", flags=AVX2_ONLY)
    assert value == "bf16-mixed"
    assert line.startswith("warning:") and "0.5 samples/s" in line and "--trainer.precision auto" in line
    assert resolve_precision("bf16-mixed", "cpu", flags=AVX2_ONLY | {"avx512_bf16"}) == ("bf16-mixed", None)
    assert resolve_precision("32-true", "cpu", flags=AVX2_ONLY) == ("32-true", None)


def test_a_model_that_stays_in_fp32_keeps_auto_at_32_true():
    value, line = resolve_precision("auto", "cpu", flags={"amx_bf16"}, fp32_reason="recommenders: sparse products")
    assert value == "32-true" and "recommenders" in line


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_every_shipped_recipe_defaults_to_auto():
    recipes = [p for p in (REPO / "recipes").rglob("*.yaml")
               if not {"overlays", "search"} & set(p.parts) and p.name != "results.yaml"]
    assert recipes
    for path in recipes:
        trainer = yaml.safe_load(path.read_text(encoding="utf-8")).get("trainer") or {}
        assert trainer.get("precision") == "auto", path


@pytest.mark.slow
def test_fit_on_a_cpu_without_bf16_says_auto_chose_fp32(tmp_path, capsys, monkeypatch):
    """The whole path: a recipe's ``auto`` on a faked AVX2-only CPU trains in 32-true and says so in one line.
    The fit never validates, so it also shows zoo's no-best.ckpt line instead of Lightning's raw warning."""
    monkeypatch.setattr(zoo.scale, "cpu_flags", lambda *a: set(AVX2_ONLY))
    rc = main(["fit", "--config", str(REPO / "recipes/vision/digits_tiny.yaml"), "--trainer.max_epochs", "1",
               "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "0",
               "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 0, err[-2000:]
    lines = [x for x in err.splitlines() if "precision auto" in x]
    assert lines == ["zoo: precision auto: 32-true (this CPU has no bf16 instructions: no avx512_bf16 / amx_bf16)"]
    assert "bfloat16" not in err
    assert "zoo: no best.ckpt was written: val/f1_macro was never measured, as no validation ran" in err
    assert "could not find the monitored key" not in err and not list(tmp_path.rglob("best.ckpt"))
    saved = yaml.safe_load(next(tmp_path.rglob("config.yaml")).read_text(encoding="utf-8"))
    assert saved["trainer"]["precision"] == "auto"  # the recipe's choice, re-resolved on the next machine

