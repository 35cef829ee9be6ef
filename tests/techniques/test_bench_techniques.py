"""The text half of benchmarks/bench_techniques.py on the tiny text case: every technique is timed or listed as
n/a with the reason the technique raises (no speed is asserted)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.slow
def test_text_timing_covers_every_technique_and_names_why_cutmix_does_not_apply(tmp_path):
    from benchmarks.bench_techniques import _ratios, _time_techniques, text_techniques
    from zoo.tasks.text import tiny_text_case

    teachers: list[Any] = []

    def teacher(data: Any) -> Any:
        if not teachers:
            model, _ = tiny_text_case(tmp_path)
            model.bind_data(data)
            teachers.append(model)
        return teachers[0]

    makers = text_techniques(0.5)
    timing, not_applicable = _time_techniques(makers, lambda: tiny_text_case(tmp_path), teacher, steps=2, rounds=1,
                                              skip=1)
    ratios = _ratios(timing, not_applicable, list(makers))

    assert list(ratios) == list(makers)
    assert set(not_applicable) == {"cutmix"}
    assert ratios["cutmix"].startswith("n/a: ") and "pixels" in ratios["cutmix"]
    assert ratios["plain"] == 1.0
    assert all(isinstance(v, float) and v > 0 for k, v in ratios.items() if k != "cutmix")
