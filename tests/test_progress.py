"""The run ETA (issue 22): later stages are timed from their cost per step and a start-up like
the current stage's, and no line shows an ETA measured over the compilation."""

import io

import pytest

from og_marl_omsd.support import progress


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progress.time, "time", fake)
    progress.configure(every=0.0, mode="plain")
    yield fake
    progress.configure(every=30.0, mode="auto")
    progress.plan_run(None)


def test_run_eta_times_later_stages_by_their_step_costs_and_start_up(clock):
    progress.plan_run({"critic": 100, "behaviour": 100}, costs={"critic": 1.0, "behaviour": 5.0})
    stream = io.StringIO()
    bar = progress.Progress("critic_joint", 100, stream=stream)
    clock.now += 10.0  # compilation and the first call of 10 steps
    bar.update(10)
    assert stream.getvalue() == ""  # no line yet: a speed measured over the compilation is meaningless
    clock.now += 1.0  # then 10 steps per second
    bar.update(20)
    line = stream.getvalue().splitlines()[0]
    # critic: 80 steps / 10 per s = 8 s; behaviour: 100 steps at 5x the cost = 50 s, plus a 10 s start-up
    assert line.startswith("[critic_joint] 20/100 (20%) | 10.0 steps/s | ETA 0:00:08")
    assert line.endswith("run 10% ETA ~0:01:08"), line


def test_run_eta_without_costs_uses_the_current_speed(clock):
    progress.plan_run({"critic": 100, "actors": 100})
    stream = io.StringIO()
    bar = progress.Progress("critic", 100, stream=stream)
    clock.now += 2.0
    bar.update(10)
    clock.now += 1.0
    bar.update(20)
    assert stream.getvalue().splitlines()[0].endswith("run 10% ETA ~0:00:20")  # 8 s + 10 s + a 2 s start-up
