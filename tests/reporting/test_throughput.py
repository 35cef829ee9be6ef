"""The progress bar's samples/s: samples over the wall time of the last steps, not a mean of per-step rates."""

from __future__ import annotations

import pytest


def test_samples_per_second_is_samples_over_wall_time_of_the_last_steps():
    from zoo.callbacks.progress import SamplesPerSecond

    speed = SamplesPerSecond(window=4)
    t = 100.0
    speed.update(32, t)
    assert speed.rate is None  # the first step only opens the window
    for dt in (0.1, 3.0, 0.1, 3.0, 0.1, 3.0):  # uneven steps: a mean of per-step rates says ~161
        t += dt
        speed.update(32, t)
    assert speed.rate == pytest.approx(4 * 32 / (0.1 + 3.0 + 0.1 + 3.0))  # the last 4 steps, 6.2 s
    speed.reset()
    speed.update(32, t + 50.0)  # after validation or at an epoch start the window opens again
    assert speed.rate is None
