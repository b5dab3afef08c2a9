"""Checkpoint and resume: a run killed with SIGKILL in any stage continues to the same end as
an uninterrupted run; checkpoints are atomic; a run directory holds one run."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf
from omegaconf import OmegaConf

from og_marl_omsd.runner import run as runner
from og_marl_omsd.support import checkpoints
from og_marl_omsd.support.checkpoints import FiniteGuard, StageCheckpoint
from og_marl_omsd.support.errors import CheckpointWriteError, NonFiniteLossError, StageStopped, UserError

from conftest import bandit_location, run_config

pytestmark = pytest.mark.slow  # trains or runs whole runs: `pytest -m "not slow"` leaves it out

STAGES = ("critic_joint", "behaviour_sequential", "actors")


def cli(overrides, cwd):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(
        [sys.executable, "-m", "og_marl_omsd.run", *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env=env,
    )


def kill_at_checkpoint(overrides, stage, cwd):
    """Start the run and SIGKILL it as soon as it reports ``stage``'s checkpoint of step 10."""
    process = cli(overrides, cwd)
    watchdog = threading.Timer(300, process.kill)
    watchdog.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith(f"[checkpoint] {stage} step 10/"):
                os.kill(process.pid, signal.SIGKILL)
                break
        process.wait(timeout=60)
    finally:
        watchdog.cancel()
    output = "".join(lines)
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    return output


def resumed_step(output, stage):
    match = re.search(rf"\[resume\] resuming {stage} from step (\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1))


def test_sigkill_in_every_stage_resumes_to_the_same_end_as_an_uninterrupted_run(tmp_path, small_vault_dir):
    common = [
        "system=omsd",
        "env=bandit",
        "seed=3",
        "training_steps=40",
        "evaluation_every=20",
        "num_eval_episodes=1",
        "checkpoint_every=10",
        "system.critic_steps=40",
        "system.behaviour_steps=40",
        "system.pretrain_log_every=20",
        f"vault_dir={small_vault_dir}",
    ]
    interrupted = [*common, f"run_dir={tmp_path / 'interrupted'}", f"pretrained_dir={tmp_path / 'cache_interrupted'}"]

    kill_at_checkpoint(interrupted, "critic_joint", tmp_path)
    second = kill_at_checkpoint(interrupted, "behaviour_sequential", tmp_path)
    assert resumed_step(second, "critic_joint") in (10, 20, 30)
    third = kill_at_checkpoint(interrupted, "actors", tmp_path)
    assert "critic_joint: loaded from cache" in third and resumed_step(third, "behaviour_sequential") in (10, 20, 30)
    process = cli(interrupted, tmp_path)
    final_output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, final_output[-3000:]
    assert resumed_step(final_output, "actors") in (10, 20, 30)
    assert "Steps: critic_joint 40, behaviour_sequential 40, actors 40" in final_output

    reference = runner.run(
        run_config(*common, f"run_dir={tmp_path / 'reference'}", f"pretrained_dir={tmp_path / 'cache_reference'}")
    )
    resumed = json.loads((tmp_path / "interrupted" / "results.json").read_text())
    assert (
        resumed["stage_steps"]
        == reference["stage_steps"]
        == {"critic_joint": 40, "behaviour_sequential": 40, "actors": 40}
    )
    assert [e["training_steps"] for e in resumed["evaluation_curve"]] == [0, 20, 40]
    assert resumed["evaluation_curve"] == reference["evaluation_curve"]  # bit for bit: all random state resumed
    assert resumed["pretrained_cache_keys"] == reference["pretrained_cache_keys"]
    metrics = json.loads((tmp_path / "interrupted" / "metrics.json").read_text())
    ((algorithm, seeds),) = metrics["bandit"]["bandit-GMM"].items()
    assert algorithm.startswith("omsd@beta=")
    assert sorted(seeds["seed_3"]) == ["absolute_metrics", "step_0", "step_1"]  # steps 20 and 40
    assert len(seeds["seed_3"]["step_1"]["episode_return"]) == reference["final_evaluation_episodes"]["episodes"]

    again = subprocess.run(
        [sys.executable, "-m", "og_marl_omsd.run", *interrupted],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert again.returncode == 0 and "Run already complete" in again.stdout
    assert f"Final mean return: {resumed['final_evaluation']['mean_episode_return']:.4f}" in again.stdout
    assert "[pretrain]" not in again.stdout


# ---------------------------------------------------------------------------- atomic checkpoints
class _Stage:
    """A tiny stage: a linear layer, Adam, a generator and a NaN guard."""

    def __init__(self, directory, every=5, total=20, dataset_fingerprint=None):
        tf.random.set_seed(0)
        self.net = snt.Linear(3)
        self.net(tf.zeros([1, 2]))
        self.optimizer = snt.optimizers.Adam(0.1)
        self.rng = tf.random.Generator.from_seed(1)
        self.guard = FiniteGuard()
        self.total = total
        self.checkpoint = StageCheckpoint(
            str(directory),
            "stage",
            every,
            trackables={"net": self.net, "optimizer": self.optimizer, "rng": self.rng},
            optimisers={self.optimizer: self.net.trainable_variables},
            guard=self.guard,
            **({} if dataset_fingerprint is None else {"dataset_fingerprint": dataset_fingerprint}),
        )

    def step(self):
        x = self.rng.normal([4, 2])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(self.net(x)))
        self.optimizer.apply(tape.gradient(loss, self.net.trainable_variables), self.net.trainable_variables)
        self.guard.update({"loss": loss})

    def values(self):
        return [v.numpy().copy() for v in (*self.net.variables, *self.optimizer.variables, self.rng.state)]


def test_restored_stage_continues_exactly_like_an_uninterrupted_one(tmp_path):
    uninterrupted = _Stage(tmp_path / "a")
    for _ in range(10):
        uninterrupted.step()
    first = _Stage(tmp_path / "b")
    for step in range(1, 6):
        first.step()
        first.checkpoint.maybe_save(step, first.total)
    second = _Stage(tmp_path / "b")  # a new process: fresh objects, optimiser slots not created yet
    assert second.checkpoint.restore(second.total) == 5
    for _ in range(5):
        second.step()
    for a, b in zip(uninterrupted.values(), second.values()):
        np.testing.assert_array_equal(a, b)


def test_failed_checkpoint_write_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    stage = _Stage(tmp_path)
    stage.step()
    good = stage.checkpoint.save(5, stage.total)
    saved = stage.values()
    stage.step()

    def disk_full(self, prefix, options=None):
        open(prefix + ".index", "w").close()  # something reached the disk before it filled up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tf.train.Checkpoint, "write", disk_full)
    with pytest.raises(CheckpointWriteError) as error:
        stage.checkpoint.save(10, stage.total)
    assert "No space left on device" in str(error.value) and f"{good} (step 5) is intact" in str(error.value)
    monkeypatch.undo()
    assert sorted(os.listdir(stage.checkpoint.path)) == ["LATEST", "step-000000005"]  # no partial checkpoint
    restored = _Stage(tmp_path)
    assert restored.checkpoint.restore(restored.total) == 5
    for a, b in zip(saved, restored.values()):
        np.testing.assert_array_equal(a, b)


def test_crash_before_the_commit_point_leaves_the_previous_checkpoint_latest(tmp_path, monkeypatch):
    stage = _Stage(tmp_path)
    stage.step()
    stage.checkpoint.save(5, stage.total)
    real_write_file = checkpoints._write_file

    def killed_at_commit(path, text):
        if path.endswith(checkpoints.LATEST):
            raise KeyboardInterrupt("killed between the rename and the LATEST update")
        real_write_file(path, text)

    monkeypatch.setattr(checkpoints, "_write_file", killed_at_commit)
    with pytest.raises(KeyboardInterrupt):
        stage.checkpoint.save(10, stage.total)
    monkeypatch.undo()
    assert stage.checkpoint.latest_step() == 5  # step-10 is complete on disk but was never committed
    restarted = _Stage(tmp_path)
    assert restarted.checkpoint.restore(restarted.total) == 5
    restarted.step()
    restarted.checkpoint.save(10, restarted.total)  # replaces the uncommitted leftover
    assert sorted(os.listdir(restarted.checkpoint.path)) == ["LATEST", "step-000000005", "step-000000010"]


def test_checkpoint_of_another_length_or_shape_is_refused(tmp_path):
    stage = _Stage(tmp_path)
    stage.step()
    stage.checkpoint.save(5, stage.total)
    with pytest.raises(StageStopped, match="step 5 of 20, but this run asks for 30"):
        _Stage(tmp_path, total=30).checkpoint.restore(30)
    wider = snt.Linear(7)
    wider(tf.zeros([1, 2]))
    other = StageCheckpoint(str(tmp_path), "stage", 5, trackables={"net": wider})
    with pytest.raises(StageStopped, match="cannot be restored"):
        other.restore(20)


def test_checkpoint_made_from_other_data_is_refused(tmp_path):
    stage = _Stage(tmp_path, dataset_fingerprint="aaaa")
    stage.step()
    stage.checkpoint.save(5, stage.total)
    with pytest.raises(UserError, match=r"trained on data with fingerprint aaaa, but this run reads .* bbbb"):
        _Stage(tmp_path, dataset_fingerprint="bbbb").checkpoint.restore(stage.total)
    assert _Stage(tmp_path, dataset_fingerprint="aaaa").checkpoint.restore(stage.total) == 5


def test_unreadable_checkpoint_is_an_access_error_not_damage(tmp_path, monkeypatch):
    stage = _Stage(tmp_path)
    stage.step()
    stage.checkpoint.save(5, stage.total)

    def denied(directory):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.path.join(directory, "state.json"))

    monkeypatch.setattr(checkpoints, "read_state", denied)
    with pytest.raises(StageStopped) as error:
        _Stage(tmp_path).checkpoint.restore(stage.total)
    message = str(error.value)
    assert "Permission denied" in message and "state.json" in message and "not a damaged checkpoint" in message
    assert "Delete" not in message
    monkeypatch.undo()
    assert _Stage(tmp_path).checkpoint.restore(stage.total) == 5  # left as it was


def test_guard_stops_before_saving_a_non_finite_step(tmp_path):
    stage = _Stage(tmp_path)
    stage.step()
    stage.checkpoint.save(5, stage.total)
    stage.guard.update({"loss": tf.constant(float("nan"))})
    with pytest.raises(NonFiniteLossError, match=r"at step 2\b.*step-000000005 \(step 5\)"):
        stage.checkpoint.save(10, stage.total)
    assert stage.checkpoint.latest_step() == 5


# ---------------------------------------------------------------------------- run directories
def test_default_run_dir_is_a_function_of_the_command(tmp_path):
    base = ["training_steps=20", f"runs_root={tmp_path}"]
    same = runner.default_run_dir(run_config(*base), "GMM")
    assert same == runner.default_run_dir(run_config(*base, "checkpoint_every=7", "logger.terminal_log_every=1"), "GMM")
    assert same.startswith(str(tmp_path / "omsd" / "bandit-bandit" / "GMM" / "seed0-"))
    assert same != runner.default_run_dir(run_config(*base, "seed=1"), "GMM")
    assert same != runner.default_run_dir(run_config(*base, "system.beta=0.7"), "GMM")


def test_run_dir_of_another_run_is_refused_and_left_alone(tmp_path, small_vault_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stored = run_config("training_steps=20", f"vault_dir={small_vault_dir}", f"run_dir={run_dir}")
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(stored, resolve=True))
    (run_dir / "results.json").write_text("{}")
    with pytest.raises(UserError, match=r"holds a different run \(training_steps: 20 there, 30 now\)"):
        runner.run(run_config("training_steps=30", f"vault_dir={small_vault_dir}", f"run_dir={run_dir}"))
    assert sorted(os.listdir(run_dir)) == ["config.yaml", "results.json"]


def test_second_process_in_the_same_run_dir_is_refused(tmp_path):
    held = runner._lock_run_dir(str(tmp_path))
    try:
        with pytest.raises(UserError, match="Another process is running in"):
            runner._lock_run_dir(str(tmp_path))
    finally:
        held.close()
    runner._lock_run_dir(str(tmp_path)).close()  # free again once the holder is gone


# ---------------------------------------------------------------------------- the data a run was made from
def _write_gmm(vault_dir, seed):
    """Dataset GMM of the bandit under ``vault_dir`` (replacing one that is there) from ``seed``."""
    import shutil

    from og_marl_omsd.datasets.vaults import write_dataset
    from og_marl_omsd.environments.bandit import generate_bandit_experience

    location = bandit_location(str(vault_dir))
    shutil.rmtree(location.dataset_path("GMM"), ignore_errors=True)
    write_dataset(location, "GMM", generate_bandit_experience(3000, seed=seed))


def test_run_on_a_changed_dataset_never_returns_or_continues_the_old_work(tmp_path, capsys):
    vaults, run_dir = tmp_path / "vaults", tmp_path / "run"
    _write_gmm(vaults, seed=0)
    overrides = [
        "training_steps=4",
        "evaluation_every=2",
        "num_eval_episodes=1",
        "checkpoint_every=2",
        "system.critic_steps=4",
        "system.behaviour_steps=4",
        f"vault_dir={vaults}",
        f"run_dir={run_dir}",
        f"pretrained_dir={tmp_path / 'cache'}",
    ]
    first = runner.run(run_config(*overrides))
    results = (run_dir / "results.json").read_text()
    _write_gmm(vaults, seed=1)  # another complete dataset under the same name
    capsys.readouterr()

    with pytest.raises(UserError, match=r"changed since the run in .* was made: .*Its results belong to the old data"):
        runner.run(run_config(*overrides))  # finished: never the old result
    assert "Run already complete" not in capsys.readouterr().out
    assert (run_dir / "results.json").read_text() == results

    (run_dir / "results.json").unlink()  # as if killed in the actor stage: its checkpoints are there
    for record in ("dataset.json", None):  # the run directory's record, else the checkpoints' own
        with pytest.raises(UserError, match=r"changed since the run in .* was started: .*Its checkpoints belong"):
            runner.run(run_config(*overrides))
        assert "[resume] resuming" not in capsys.readouterr().out
        if record:
            (run_dir / record).unlink()
    assert not (run_dir / "results.json").exists()

    _write_gmm(vaults, seed=0)  # the data it was made from, back: the run resumes to the same end
    resumed = runner.run(run_config(*overrides))
    assert "[resume] resuming actors from step 4" in capsys.readouterr().out
    assert resumed["evaluation_curve"] == first["evaluation_curve"]
    assert (
        json.loads((run_dir / "dataset.json").read_text())["fingerprint"] == first["dataset_statistics"]["fingerprint"]
    )
