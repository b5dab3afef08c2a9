"""A run's wall time is summed over every process that worked on it (issue 22)."""

import json

import pytest

from og_marl_omsd.runner import run as runner
from og_marl_omsd.runner import steps as run_steps
from og_marl_omsd.runner.tracking import WALL_TIME_FILE, WallClock

from conftest import run_config


def test_wall_clock_sums_every_process_of_a_run_dir(tmp_path):
    first = WallClock(str(tmp_path), started=1000.0)
    first.processes = lambda now=None: [{"started": 1000.0, "seconds": 21.0}]  # as if killed after 21 s
    first.record()
    second = WallClock(str(tmp_path), started=2000.0)
    assert second.total(now=2005.0) == pytest.approx(26.0)
    assert second.processes(now=2005.0) == [{"started": 1000.0, "seconds": 21.0}, {"started": 2000.0, "seconds": 5.0}]


def test_damaged_wall_time_record_starts_a_fresh_one(tmp_path):
    (tmp_path / WALL_TIME_FILE).write_text("{not json")
    assert WallClock(str(tmp_path), started=10.0).total(now=12.0) == pytest.approx(2.0)


@pytest.mark.slow
def test_resumed_run_reports_the_wall_time_of_both_processes(tmp_path, small_vault_dir, monkeypatch, capsys):
    overrides = [
        "training_steps=20",
        "evaluation_every=10",
        "num_eval_episodes=1",
        "checkpoint_every=5",
        "system.critic_steps=20",
        "system.behaviour_steps=20",
        "system.pretrain_log_every=10",
        "system.jit_compile=false",
        f"vault_dir={small_vault_dir}",
        f"pretrained_dir={tmp_path / 'pretrained'}",
        f"run_dir={tmp_path / 'run'}",
    ]
    real_train = run_steps.train_and_evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("killed after pretraining")

    monkeypatch.setattr(run_steps, "train_and_evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run(run_config(*overrides))
    first = json.loads((tmp_path / "run" / WALL_TIME_FILE).read_text())["processes"]
    assert len(first) == 1 and first[0]["seconds"] > 0
    monkeypatch.setattr(run_steps, "train_and_evaluate", real_train)
    results = runner.run(run_config(*overrides))
    shares = results["wall_time_processes"]
    assert len(shares) == 2 and shares[0]["seconds"] >= first[0]["seconds"]
    assert results["wall_time_seconds"] == pytest.approx(sum(share["seconds"] for share in shares))
    assert results["wall_time_seconds"] > shares[1]["seconds"]  # not only the last process
    assert "over 2 processes" in capsys.readouterr().out
