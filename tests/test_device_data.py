"""The fast training path (runner/device_data.py): device-resident transitions, K steps per compiled call.
Same seed, same numbers: K = 1 and K > 1 give equal losses and weights, and a run interrupted and resumed
(with another K) ends where an uninterrupted one does."""

import numpy as np
import pytest
import tensorflow as tf

from og_marl_omsd.environments.bandit import BanditEnvironment
from og_marl_omsd.host import FlashbaxReplayBuffer
from og_marl_omsd.runner.device_data import DeviceDataset, buffer_transitions, chunk_size
from og_marl_omsd.runner.registry import load_system
from og_marl_omsd.support.replay import ReplayAdapter
from og_marl_omsd.systems.base import experience_to_tensors, transition_batch

pytestmark = pytest.mark.slow  # trains or runs whole runs: `pytest -m "not slow"` leaves it out

TINY = dict(
    critic_steps=24,
    behaviour_steps=24,
    critic_hidden_sizes=(16,),
    actor_hidden_sizes=(16,),
    diffusion_width=16,
    diffusion_hidden=32,
    diffusion_blocks=1,
    diffusion_time_dim=16,
    pretrain_log_every=8,
)


class _Interrupt(Exception):
    pass


class _Recorder:
    """Keeps every write; raises :class:`_Interrupt` at the write that reports ``stop_at``."""

    def __init__(self, stop_at=None):
        self.writes, self.stop_at = [], stop_at

    def write(self, logs, force=False):
        logs = {
            k: float(v)
            for k, v in logs.items()
            if "per_second" not in k and "time_for" not in k and k != "training_sps"
        }
        self.writes.append(logs)
        if self.stop_at is not None and logs.get(self.stop_at[0]) == self.stop_at[1]:
            raise _Interrupt()

    def close(self):
        pass


@pytest.fixture(scope="module")
def buffer(small_vault_dir):
    replay = FlashbaxReplayBuffer(sequence_length=2, batch_size=32, seed=0)
    replay.populate_from_vault("og_marl_omsd", "bandit", "2agent_gmm", "GMM", rel_dir=small_vault_dir)
    return replay


def _train(buffer, system_name, logger, steps_per_call, jit_compile=True, checkpoint_dir=None, actor_steps=24):
    system = load_system(system_name)(
        BanditEnvironment(), logger, seed=5, steps_per_call=steps_per_call, jit_compile=jit_compile, **TINY
    )
    if checkpoint_dir is not None:
        system.enable_checkpointing(str(checkpoint_dir), every=8)
    system.pretrain(buffer)
    system.train(buffer, training_steps=actor_steps, evaluation_every=12, num_eval_episodes=1)
    return system


def _weights(system):
    modules = (system.critic, system.behaviour_model, system.actors)
    return [v.numpy() for module in modules for v in module.variables]


def _training_logs(logger):
    return [w for w in logger.writes if not any(k.startswith("evaluation/") for k in w)]


def test_many_steps_per_call_equal_one_step_per_call(buffer):
    """XLA-compiled, as the runner trains: K only changes where the calls end."""
    one, many = _Recorder(), _Recorder()
    single = _train(buffer, "omsd", one, steps_per_call=1)
    multi = _train(buffer, "omsd", many, steps_per_call=5)
    for a, b in zip(_weights(single), _weights(multi), strict=True):
        np.testing.assert_array_equal(a, b)
    pretraining = lambda logger: [w for w in logger.writes if any(k.startswith("pretrain/") for k in w)]  # noqa: E731
    assert pretraining(one) == pretraining(many) and len(pretraining(one)) == 6  # every 8 steps, two stages
    final = lambda logger: [w for w in _training_logs(logger) if w.get("training_steps") == 24]  # noqa: E731
    assert final(one) == final(many) and len(final(one)) == 1 and np.isfinite(final(one)[0]["losses/actor_loss"])
    evaluations = lambda logger: [w for w in logger.writes if "evaluation/mean_episode_return" in w]  # noqa: E731
    assert evaluations(one) == evaluations(many) and [w["evaluation/training_steps"] for w in evaluations(one)] == [
        0,
        12,
        24,
    ]


def test_interrupted_run_resumes_to_the_uninterrupted_end_with_another_k(buffer, tmp_path):
    """Stopped in the behaviour stage (after its step-16 checkpoint), then in the actor stage
    at step 12 (newest checkpoint: step 8); each restart continues with another K."""
    run = dict(jit_compile=False, checkpoint_dir=tmp_path / "run")
    reference = _train(
        buffer, "omsd", _Recorder(), steps_per_call=5, jit_compile=False, checkpoint_dir=tmp_path / "reference"
    )
    with pytest.raises(_Interrupt):
        _train(buffer, "omsd", _Recorder(stop_at=("pretrain/behaviour_sequential/step", 16.0)), steps_per_call=5, **run)
    with pytest.raises(_Interrupt):
        _train(buffer, "omsd", _Recorder(stop_at=("training_steps", 12.0)), steps_per_call=3, **run)
    resumed = _train(buffer, "omsd", _Recorder(), steps_per_call=7, **run)
    for a, b in zip(_weights(reference), _weights(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.training_step_ctr == 24


def test_device_transitions_are_the_host_buffers_transitions(buffer):
    transitions = buffer_transitions(buffer)
    rows, length = np.shape(ReplayAdapter(buffer).storage().experience["actions"])[:2]
    assert len(transitions["state"]) == rows * (length - 1)
    table = np.concatenate(
        [transitions[k].reshape(len(transitions[k]), -1) for k in ("observations", "actions", "state", "next_state")]
        + [transitions[k][:, None] for k in ("reward", "done", "mask")],
        axis=1,
    )
    known = {row.tobytes() for row in table}
    host = transition_batch(experience_to_tensors(buffer.sample()), 1.0)
    sampled = np.concatenate(
        [host[k].numpy().reshape(32, -1) for k in ("observations", "actions", "state", "next_state")]
        + [host[k].numpy()[:, None] for k in ("reward", "done", "mask")],
        axis=1,
    )
    assert all(row.tobytes() in known for row in sampled)
    dataset = DeviceDataset.of(buffer)
    assert DeviceDataset.of(buffer) is dataset and dataset.size == len(table)
    batch = dataset.sample(tf.random.Generator.from_seed(1), reward_scale=2.0)
    again = dataset.sample(tf.random.Generator.from_seed(1), reward_scale=2.0)
    assert batch["state"].shape == (32, 1) and np.array_equal(batch["reward"], again["reward"])
    index = [np.flatnonzero((transitions["actions"] == a).all(axis=(1, 2)))[0] for a in batch["actions"].numpy()]
    np.testing.assert_allclose(batch["reward"].numpy(), 2.0 * transitions["reward"][index])


def test_call_boundaries_land_on_logging_checkpoint_and_evaluation_steps():
    assert chunk_size(0, 100, 50, 30, None) == 30
    assert chunk_size(30, 100, 50, 30, 40) == 10
    assert chunk_size(90, 100, 50, None, None) == 10
    assert chunk_size(0, 100, 7, 1000, 1000) == 7
    assert chunk_size(5, 100, 1, 8) == 1
