"""support/progress.py: progress lines (k/N, rate, ETA, the run's ETA), printed periodically; the run
ETA times later stages from their cost per step and a start-up like the current stage's, and no line
shows an ETA measured over the compilation; a captured run shows them for every stage."""

import io
import re

import pytest
import tensorflow as tf

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


PROGRESS_LINE = r"\[{stage}\] {done}/{total} \(\d+%\) \| [\d.]+ steps/s \| ETA \d+:\d\d:\d\d"


@pytest.fixture
def plain_progress():
    progress.configure(every=0.0, mode="plain")
    yield
    progress.configure(every=30.0, mode="auto")
    progress.plan_run(None)


@pytest.mark.slow
def test_progress_prints_k_of_n_rate_eta_and_the_run_eta(plain_progress):
    stream = io.StringIO()
    progress.plan_run({"critic": 10, "behaviour": 10, "actors": 20})
    bar = progress.Progress("actors", 20, start=4, stream=stream)  # a resumed stage; critic/behaviour were cached
    for step in range(8, 21, 4):  # called every K = 4 steps, with absolute step counts
        bar.update(step, {"losses/actor_loss": tf.constant(0.5)})
    bar.close()
    lines = stream.getvalue().splitlines()
    # the first line waits for a measured speed (the first update's includes the compilation)
    assert [re.match(r"\[actors\] (\d+)/20", line).group(1) for line in lines] == ["12", "16", "20"]
    assert all(re.match(PROGRESS_LINE.format(stage="actors", done=r"\d+", total=20), line) for line in lines)
    assert "actor_loss 0.5" in lines[0]
    # cached stages count as done: 10 + 10 + 12 of 40 steps at the first line
    assert re.search(r"run 80% ETA ~\d+:\d\d:\d\d", lines[0]) and "run 100%" in lines[-1]
    assert progress.format_duration(3725) == "1:02:05" and progress.format_duration(float("inf")) == "?"


@pytest.mark.slow
def test_progress_prints_periodically_not_every_step(plain_progress):
    progress.configure(every=3600.0)
    stream = io.StringIO()
    bar = progress.Progress("critic_joint", 100, stream=stream)
    for step in range(1, 101):
        bar.update(step)
    # the first with a measured speed, and the last
    assert [line.split(" ")[1] for line in stream.getvalue().splitlines()] == ["2/100", "100/100"]


@pytest.mark.slow
def test_a_captured_run_shows_progress_of_every_stage_and_readable_evaluations(finished_run):
    _, output = finished_run
    for stage in ("critic_joint", "behaviour_sequential", "actors"):
        assert re.search(PROGRESS_LINE.format(stage=stage, done=20, total=20), output), output[-3000:]
    assert re.search(r"\[actors\] 20/20 .*\| run 100% ETA ~0:00:00", output)
    assert re.search(r"\[evaluation\] actors step 20/20: mean return \S+ \(min \S+, max \S+\)", output)
    assert "losses/actor_loss:" not in output  # no raw dict lines
