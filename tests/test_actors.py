"""The actor stage every system shares (systems/actors.py): one update path, its schedule, BC on it."""

import inspect

import numpy as np
import pytest
import tensorflow as tf

from og_marl_omsd.environments.bandit import BanditEnvironment
from og_marl_omsd.host import FlashbaxReplayBuffer, TerminalLogger
from og_marl_omsd.models.losses import cosine_decay
from og_marl_omsd.runner.registry import load_system
from og_marl_omsd.systems.actors import ActorSystem, experience_to_tensors, transition_batch


class _TrainLogs(TerminalLogger):
    def __init__(self):
        self.calls = []

    def write(self, logs, force=False):
        if "training_steps" in logs:
            self.calls.append({key: float(value) for key, value in logs.items()})


@pytest.fixture(scope="module")
def buffer(bandit_vault_dir):
    replay = FlashbaxReplayBuffer(sequence_length=2, batch_size=16, seed=0)
    replay.populate_from_vault("og_marl_omsd", "bandit", "2agent_gmm", "GMM", rel_dir=bandit_vault_dir)
    return replay


def _bc(logger=None, **overrides):
    params = dict(actor_hidden_sizes=(8,), actor_learning_rate=1e-2, jit_compile=False, seed=3) | overrides
    return load_system("bc")(BanditEnvironment(), logger or _TrainLogs(), **params)


def test_the_learning_rate_of_each_call_is_the_cosine_decay_at_its_last_step(buffer):
    system = _bc(steps_per_call=3)
    system.train(buffer, training_steps=8, evaluation_every=None, num_eval_episodes=1)
    steps = [int(call["training_steps"]) for call in system.logger.calls]
    assert steps == [3, 6, 8]
    for done, call in zip(steps, system.logger.calls):
        expected = float(cosine_decay(1e-2, tf.constant(done - 1), tf.constant(8)))
        assert call["charts/actor_learning_rate"] == pytest.approx(expected, rel=1e-6)
    assert system.training_step_ctr == 8 and float(system._actor_lr) == pytest.approx(expected)


def test_train_step_is_one_batch_through_the_compiled_actor_step(buffer):
    """OG-MARL's per-step interface gives the update ``train`` makes on the same batch."""
    sample = buffer.sample()
    batch = transition_batch(experience_to_tensors(sample), 1.0)
    stepped, reference = _bc(), _bc()
    stepped._total_actor_steps = reference._total_actor_steps = 4
    stepped.training_step_ctr = 1
    logs = stepped.train_step(sample)
    reference._actor_lr.assign(cosine_decay(1e-2, tf.constant(1), tf.constant(4)))
    loss, _ = reference._actor_update(batch)
    assert float(logs["losses/actor_loss"]) == pytest.approx(float(loss), rel=1e-6)
    assert float(logs["charts/actor_learning_rate"]) == pytest.approx(float(reference._actor_lr), rel=1e-6)
    for a, b in zip(stepped.actors.variables, reference.actors.variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_bc_is_the_actor_stage_with_its_loss_and_restarts_it(buffer):
    bc = load_system("bc")
    assert issubclass(bc, ActorSystem)
    assert {name for name in vars(bc) if not name.startswith("__")} == {"actor_loss"}
    system = _bc()
    assert system.pretrain(buffer) == {}
    initial = [v.numpy().copy() for v in system.actors.variables]
    system.train(buffer, training_steps=2, evaluation_every=None, num_eval_episodes=1)
    assert any(np.any(v.numpy() != w) for v, w in zip(system.actors.variables, initial))
    system.restart_actor_training()
    assert system.training_step_ctr == 0
    assert all(np.array_equal(v.numpy(), w) for v, w in zip(system.actors.variables, initial))


def test_the_constructor_takes_exactly_its_hyperparameters():
    parameters = inspect.signature(load_system("bc").__init__).parameters
    assert list(parameters)[3:] == [
        "actor_hidden_sizes",
        "actor_learning_rate",
        "shared_actor",
        "jit_compile",
        "steps_per_call",
        "reward_scale",
        "seed",
    ]
    with pytest.raises(TypeError, match="unexpected keyword argument.*beta"):
        _bc(beta=0.5)
    with pytest.raises(ValueError, match="steps_per_call must be a whole number in"):
        _bc(steps_per_call=0)
