"""runner/tracking.py: a run's wall time is summed over every process that worked on it; wandb keeps one
run across a kill and resume (group and name), and without the package says how to install it."""

import glob
import json
import os

import pytest

from og_marl_omsd.runner import run as runner
from og_marl_omsd.runner import steps as run_steps
from og_marl_omsd.runner.tracking import WALL_TIME_FILE, WallClock
from og_marl_omsd.support.errors import UserError

from conftest import (
    fast_overrides,
    kill_at_checkpoint,
    run_config,
    run_module,
)


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
    overrides = fast_overrides(tmp_path, small_vault_dir, f"run_dir={tmp_path / 'run'}")
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


@pytest.mark.slow
def test_wandb_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a)
    )
    with pytest.raises(UserError, match="pip install wandb"):
        runner.run(run_config("logger.wandb=true", f"runs_root={tmp_path / 'runs'}"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_wandb_keeps_one_run_across_a_kill_and_resume_with_group_and_name(tmp_path, small_vault_dir, monkeypatch):
    pytest.importorskip("wandb")

    from og_marl_omsd.runner.tracking import wandb_settings

    overrides = [
        "seed=4",
        "training_steps=40",
        "evaluation_every=20",
        "num_eval_episodes=1",
        "checkpoint_every=10",
        "system.critic_steps=20",
        "system.behaviour_steps=20",
        "system.pretrain_log_every=10",
        "logger.wandb=true",
        f"vault_dir={small_vault_dir}",
        f"pretrained_dir={tmp_path / 'pretrained'}",
        f"run_dir={tmp_path / 'run'}",
    ]
    monkeypatch.setenv("WANDB_MODE", "offline")
    kill_at_checkpoint(overrides, "actors", tmp_path)
    resumed = run_module("og_marl_omsd.run", *overrides, cwd=tmp_path)
    assert resumed.returncode == 0 and "[resume] resuming actors" in resumed.stdout, resumed.stderr[-3000:]
    run_id = (tmp_path / "run" / "wandb_run_id").read_text().strip()
    runs = sorted(glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*")))
    assert len(runs) == 2 and all(path.endswith(f"-{run_id}") for path in runs), runs  # one wandb run, two sessions

    settings = wandb_settings(run_config(*overrides), str(tmp_path / "run"), "GMM")
    assert settings["name"] == "omsd-bandit-GMM-seed4" and settings["group"].startswith("omsd-bandit-bandit-GMM-")
    other_seed = wandb_settings(run_config(*overrides, "seed=5"), str(tmp_path / "other"), "GMM")
    other_beta = wandb_settings(run_config(*overrides, "system.beta=0.2"), str(tmp_path / "other2"), "GMM")
    assert other_seed["group"] == settings["group"] != other_beta["group"]
    # The resumed session's offline record carries the id, group and name (the killed session's
    # record may be cut short: SIGKILL can land before wandb flushed it; its folder names the id).
    data = open(glob.glob(os.path.join(runs[-1], "run-*.wandb"))[0], "rb").read()
    assert all(text.encode() in data for text in (run_id, settings["group"], settings["name"]))
