"""support/checkpoints.py: atomic stage checkpoints (a restored stage continues exactly like an
uninterrupted one; a failed or cut-short write keeps the last good one; a damaged newest one falls back to
the previous one), refusals of another length, shape or data, and the NaN guard (stops before saving a
non-finite step, names the checkpoint that exists, a NaN model is never cached)."""

import errno
import os

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

from og_marl_omsd.runner import run as runner
from og_marl_omsd.support import checkpoints
from og_marl_omsd.support.checkpoints import FiniteGuard, StageCheckpoint
from og_marl_omsd.support.errors import CheckpointWriteError, NonFiniteLossError, StageStopped, UserError

from conftest import fast_overrides, run_config


def _guard_with_nan_at_first_step():
    guard = FiniteGuard()
    guard.update({"loss": tf.constant(float("nan"))})
    return guard


def test_nan_before_any_checkpoint_does_not_promise_a_resume_from_one(tmp_path):
    guard = _guard_with_nan_at_first_step()
    checkpoint = StageCheckpoint(str(tmp_path), "stage", 5, trackables={}, guard=guard)
    with pytest.raises(NonFiniteLossError) as error:
        checkpoint.save(5, 20)
    message = str(error.value)
    assert "has no checkpoint (none was written before the loss went bad)" in message
    assert "starts the stage from step 0" in message
    assert "resumes from that checkpoint" not in message and "last good checkpoint is" not in message


def test_nan_without_checkpointing_says_so():
    with pytest.raises(NonFiniteLossError, match=r"no checkpoint \(checkpointing is off\)") as error:
        _guard_with_nan_at_first_step().check("critic")
    assert "resumes" not in str(error.value)


def test_nan_after_a_checkpoint_names_it_and_resumes_from_it(tmp_path):
    guard = FiniteGuard()
    checkpoint = StageCheckpoint(str(tmp_path), "stage", 5, trackables={}, guard=guard)
    checkpoint.save(5, 20)
    guard.update({"loss": tf.constant(float("inf"))})
    with pytest.raises(NonFiniteLossError, match=r"last good checkpoint is .*step-000000005 \(step 5\)") as error:
        checkpoint.save(10, 20)
    assert "resumes from that checkpoint" in str(error.value)


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_checkpoint_made_from_other_data_is_refused(tmp_path):
    stage = _Stage(tmp_path, dataset_fingerprint="aaaa")
    stage.step()
    stage.checkpoint.save(5, stage.total)
    with pytest.raises(UserError, match=r"trained on data with fingerprint aaaa, but this run reads .* bbbb"):
        _Stage(tmp_path, dataset_fingerprint="bbbb").checkpoint.restore(stage.total)
    assert _Stage(tmp_path, dataset_fingerprint="aaaa").checkpoint.restore(stage.total) == 5


@pytest.mark.slow
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


@pytest.mark.slow
def test_guard_stops_before_saving_a_non_finite_step(tmp_path):
    stage = _Stage(tmp_path)
    stage.step()
    stage.checkpoint.save(5, stage.total)
    stage.guard.update({"loss": tf.constant(float("nan"))})
    with pytest.raises(NonFiniteLossError, match=r"at step 2\b.*step-000000005 \(step 5\)"):
        stage.checkpoint.save(10, stage.total)
    assert stage.checkpoint.latest_step() == 5


def _stage(directory):
    return _Stage(directory)


def _save_steps(stage, steps):
    values = {}
    for step in steps:
        stage.step()
        stage.checkpoint.save(step, stage.total)
        values[step] = stage.values()
    return values


@pytest.mark.slow
def test_previous_checkpoint_is_kept_and_used_when_the_newest_is_damaged(tmp_path, capsys):
    stage = _stage(tmp_path)
    values = _save_steps(stage, (5, 10, 15))
    path = stage.checkpoint.path
    assert sorted(os.listdir(path)) == ["LATEST", "step-000000010", "step-000000015"]
    data = [name for name in os.listdir(os.path.join(path, "step-000000015")) if name.startswith("ckpt.data")][0]
    with open(os.path.join(path, "step-000000015", data), "r+b") as handle:
        handle.truncate(8)
    restored = _stage(tmp_path)
    assert restored.checkpoint.restore(restored.total) == 10
    assert "fell back to the older stage checkpoint" in capsys.readouterr().out
    for a, b in zip(values[10], restored.values()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_empty_latest_never_restarts_from_step_0(tmp_path, capsys):
    stage = _stage(tmp_path)
    values = _save_steps(stage, (5, 10))
    latest = os.path.join(stage.checkpoint.path, "LATEST")
    open(latest, "w").close()
    restored = _stage(tmp_path)
    assert restored.checkpoint.restore(restored.total) == 10
    assert "LATEST is empty or damaged" in capsys.readouterr().out
    for a, b in zip(values[10], restored.values()):
        np.testing.assert_array_equal(a, b)
    for name in os.listdir(stage.checkpoint.path):  # nothing readable at all: stop, do not start again
        if name.startswith("step-"):
            os.remove(os.path.join(stage.checkpoint.path, name, "state.json"))
    with pytest.raises(StageStopped, match="cannot be restored"):
        _stage(tmp_path).checkpoint.restore(20)


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage,first_poisoned_sample",
    [
        ("critic_joint", 13),
        ("behaviour_sequential", 20 + 13),
        ("actors", 40 + 13),
    ],
)
def test_nan_loss_stops_the_run_naming_stage_step_and_intact_checkpoint(
    stage, first_poisoned_sample, tmp_path, small_vault_dir, monkeypatch
):
    """Batches turn NaN from the 13th step of ``stage`` on; checkpoints every 5 steps."""
    import tensorflow as tf

    from og_marl_omsd.runner import device_data
    from og_marl_omsd.support.checkpoints import read_state

    # Batches are drawn on the device inside the compiled steps: count the draws there.
    draws = tf.Variable(0, dtype=tf.int64, trainable=False)
    sample = device_data.DeviceDataset.sample

    def poisoned_sample(self, rng, reward_scale=1.0):
        batch = sample(self, rng, reward_scale)
        poisoned = draws.assign_add(1) >= first_poisoned_sample
        nan = lambda x: tf.where(poisoned, tf.fill(tf.shape(x), float("nan")), x)  # noqa: E731
        return {**batch, **{key: nan(batch[key]) for key in ("observations", "reward", "state", "next_state")}}

    monkeypatch.setattr(device_data.DeviceDataset, "sample", poisoned_sample)
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as error:
        runner.run(run_config(*fast_overrides(tmp_path, small_vault_dir, f"run_dir={run_dir}")))
    message = str(error.value)
    stage_dir = next((run_dir / "checkpoints").glob(f"{stage}*"))
    good = stage_dir / "step-000000010"
    assert f"Stage {stage} stopped" in message and "at step 13" in message, message
    assert f"{good} (step 10)" in message and "not overwritten" in message
    assert (stage_dir / "LATEST").read_text() == good.name and read_state(str(good))["step"] == 10
    assert {p.name for p in stage_dir.iterdir()} == {"LATEST", good.name, "step-000000005"}  # and the previous one
    reader = tf.train.load_checkpoint(str(good / "ckpt"))
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), name
    assert not (run_dir / "results.json").exists()
    cached = [p.name for p in (tmp_path / "pretrained").iterdir()] if (tmp_path / "pretrained").exists() else []
    assert not any(p.startswith(stage) for p in cached)  # a NaN model is never cached
