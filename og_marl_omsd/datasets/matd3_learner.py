"""The MATD3 learner (networks, targets, optimisers, the compiled training step), its actors
as plain numpy data, and its replay buffer (rows saved to and loaded from disk).

See :mod:`og_marl_omsd.datasets.matd3` for the algorithm and the resumable run that uses them.
TensorFlow and sonnet are imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

from og_marl_omsd.datasets.matd3_config import MATD3Config
from og_marl_omsd.support.files import atomic_file


def _make_modules():
    """The sonnet modules, defined on first use so that importing this file stays cheap."""
    import sonnet as snt
    import tensorflow as tf

    class AgentwiseMLP(snt.Module):
        """``K`` independent MLPs evaluated together: ``(B, K, I) -> (B, K, O)``.

        Used with K = number of agents for the decentralised actors (each agent its own
        weights) and with K = 2 for the twin critic. Weights are drawn uniformly in
        ``+-1/sqrt(fan_in)`` from the given numpy generator.
        """

        def __init__(self, num_heads: int, sizes: Sequence[int], rng: np.random.Generator, name: str):
            super().__init__(name=name)
            self.weights, self.biases = [], []
            for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                bound = 1.0 / np.sqrt(fan_in)
                self.weights.append(
                    tf.Variable(
                        rng.uniform(-bound, bound, (num_heads, fan_in, fan_out)).astype("float32"), name=f"w{layer}"
                    )
                )
                self.biases.append(
                    tf.Variable(rng.uniform(-bound, bound, (num_heads, fan_out)).astype("float32"), name=f"b{layer}")
                )

        def __call__(self, inputs):
            hidden = inputs
            for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
                hidden = tf.einsum("bki,kio->bko", hidden, weight) + bias
                if layer < len(self.weights) - 1:
                    hidden = tf.nn.relu(hidden)
            return hidden

    return AgentwiseMLP


def actor_sizes(observation_size: int, num_actions: int, hidden_sizes: Sequence[int]) -> List[int]:
    return [observation_size, *hidden_sizes, num_actions]


class MATD3:
    """The MATD3 learner: networks, targets, optimisers and the compiled training step."""

    def __init__(
        self,
        num_agents: int,
        observation_size: int,
        state_size: int,
        num_actions: int,
        config: MATD3Config,
        rng: np.random.Generator,
    ):
        import sonnet as snt
        import tensorflow as tf

        AgentwiseMLP = _make_modules()
        self.config = config
        self.num_agents, self.num_actions = num_agents, num_actions
        hidden = list(config.hidden_sizes)
        critic_input = state_size + num_agents * num_actions
        self.actors = AgentwiseMLP(num_agents, actor_sizes(observation_size, num_actions, hidden), rng, "actors")
        self.critics = AgentwiseMLP(2, [critic_input, *hidden, 1], rng, "twin_critic")
        self.target_actors = AgentwiseMLP(
            num_agents, actor_sizes(observation_size, num_actions, hidden), rng, "target_actors"
        )
        self.target_critics = AgentwiseMLP(2, [critic_input, *hidden, 1], rng, "target_twin_critic")
        for target, online in ((self.target_actors, self.actors), (self.target_critics, self.critics)):
            for target_variable, variable in zip(target.trainable_variables, online.trainable_variables):
                target_variable.assign(variable)
        self.actor_optimizer = snt.optimizers.Adam(config.actor_learning_rate)
        self.critic_optimizer = snt.optimizers.Adam(config.critic_learning_rate)
        self.actor_optimizer._initialize(self.actors.trainable_variables)  # slots exist before a restore
        self.critic_optimizer._initialize(self.critics.trainable_variables)
        self.updates = tf.Variable(0, dtype=tf.int64, name="updates")
        self.trackables = {  # what a checkpoint saves (og_marl_omsd.support.checkpoints.StageCheckpoint)
            "actors": self.actors,
            "critics": self.critics,
            "target_actors": self.target_actors,
            "target_critics": self.target_critics,
            "actor_optimizer": self.actor_optimizer,
            "critic_optimizer": self.critic_optimizer,
            "updates": self.updates,
        }
        self.checkpoint = tf.train.Checkpoint(**self.trackables)
        self._train = tf.function(self._train_many, jit_compile=True)

    def actor_weights(self) -> List[np.ndarray]:
        """Actor weights as ``[w0, b0, w1, b1, ...]`` (the order :class:`FrozenActors` takes)."""
        return [variable.numpy() for pair in zip(self.actors.weights, self.actors.biases) for variable in pair]

    # -- learning
    def _critic_values(self, critics, states, joint_actions):
        import tensorflow as tf

        batch = tf.shape(states)[0]
        inputs = tf.concat([states, tf.reshape(joint_actions, [batch, -1])], axis=-1)  # (B, S + N*A)
        return critics(tf.tile(inputs[:, None], [1, 2, 1]))[..., 0]  # (B, 2)

    def _train_many(self, batches: Dict[str, Any], smoothing_noise):
        """One critic update per batch in ``batches`` (leading axis K) and an actor update
        every ``policy_delay`` critic updates. Returns the mean losses."""
        import tensorflow as tf

        config = self.config
        num_batches = tf.shape(batches["rewards"])[0]
        critic_loss_sum = tf.constant(0.0)
        actor_loss_sum = tf.constant(0.0)
        actor_updates = tf.constant(0.0)
        for k in tf.range(num_batches):
            observations = batches["observations"][k]  # (B, N, O)
            states = batches["states"][k]  # (B, S)
            actions = batches["actions"][k]  # (B, N, A)
            rewards = batches["rewards"][k]  # (B,)
            terminals = batches["terminals"][k]  # (B,)
            next_observations = batches["next_observations"][k]
            next_states = batches["next_states"][k]
            noise = tf.clip_by_value(smoothing_noise[k], -config.target_noise_clip, config.target_noise_clip)
            next_actions = tf.clip_by_value(tf.tanh(self.target_actors(next_observations)) + noise, -1.0, 1.0)
            next_values = tf.reduce_min(self._critic_values(self.target_critics, next_states, next_actions), axis=-1)
            targets = tf.stop_gradient(rewards + config.discount * (1.0 - terminals) * next_values)  # (B,)
            with tf.GradientTape() as tape:
                values = self._critic_values(self.critics, states, actions)  # (B, 2)
                critic_loss = tf.reduce_mean(tf.reduce_sum(tf.square(values - targets[:, None]), axis=-1))
            gradients = tape.gradient(critic_loss, self.critics.trainable_variables)
            self.critic_optimizer.apply(gradients, self.critics.trainable_variables)
            critic_loss_sum += critic_loss
            self.updates.assign_add(1)
            if self.updates % config.policy_delay == 0:
                with tf.GradientTape() as tape:
                    policy_actions = tf.tanh(self.actors(observations))  # (B, N, A)
                    actor_loss = -tf.reduce_mean(self._critic_values(self.critics, states, policy_actions)[:, 0])
                gradients = tape.gradient(actor_loss, self.actors.trainable_variables)
                self.actor_optimizer.apply(gradients, self.actors.trainable_variables)
                for target, online in ((self.target_actors, self.actors), (self.target_critics, self.critics)):
                    for target_variable, variable in zip(target.trainable_variables, online.trainable_variables):
                        target_variable.assign(
                            (1.0 - config.target_update_rate) * target_variable + config.target_update_rate * variable
                        )
                actor_loss_sum += actor_loss
                actor_updates += 1.0
        count = tf.cast(num_batches, tf.float32)
        return {"critic_loss": critic_loss_sum / count, "actor_loss": actor_loss_sum / tf.maximum(actor_updates, 1.0)}

    def train(self, batches: Dict[str, np.ndarray], smoothing_noise: np.ndarray) -> Dict[str, float]:
        logs = self._train(batches, smoothing_noise)
        return {key: float(value) for key, value in logs.items()}


# ------------------------------------------------------------------------------ actors as data
class FrozenActors:
    """A deterministic joint policy from saved actor weights, evaluated in numpy."""

    def __init__(self, weights: Sequence[np.ndarray]):
        self.weights = [np.asarray(weight, "float32") for weight in weights[0::2]]
        self.biases = [np.asarray(bias, "float32") for bias in weights[1::2]]

    @classmethod
    def load(cls, path: str) -> "FrozenActors":
        with np.load(path) as stored:
            return cls([stored[f"arr_{i}"] for i in range(len(stored.files))])

    @classmethod
    def random(
        cls,
        observation_size: int,
        num_actions: int,
        num_agents: int,
        hidden_sizes: Sequence[int],
        rng: np.random.Generator,
    ) -> "FrozenActors":
        """A randomly initialised policy (the same initialisation as the trained actors)."""
        weights = []
        sizes = actor_sizes(observation_size, num_actions, hidden_sizes)
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / np.sqrt(fan_in)
            weights.append(rng.uniform(-bound, bound, (num_agents, fan_in, fan_out)))
            weights.append(rng.uniform(-bound, bound, (num_agents, fan_out)))
        return cls(weights)

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """Joint actions ``(B, N, A)`` in [-1, 1] for observations ``(B, N, O)``."""
        hidden = np.asarray(observations, "float32")
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            hidden = np.einsum("bki,kio->bko", hidden, weight) + bias
            if layer < len(self.weights) - 1:
                hidden = np.maximum(hidden, 0.0)
        return np.tanh(hidden)


def save_actor_weights(path: str, weights: Sequence[np.ndarray]) -> None:
    with atomic_file(path, "wb") as handle:
        np.savez(handle, *weights)


class ReplayBuffer:
    """All transitions of the run in order (capacity = total steps): nothing is evicted,
    so the buffer up to any step is that step's Medium-Replay."""

    FIELDS = (
        "observations",
        "actions",
        "rewards",
        "terminals",
        "truncations",
        "states",
        "next_observations",
        "next_states",
    )

    def __init__(self, capacity: int, num_agents: int, observation_size: int, state_size: int, num_actions: int):
        n, o, s, a = num_agents, observation_size, state_size, num_actions
        shapes = {
            "observations": (n, o),
            "actions": (n, a),
            "rewards": (n,),
            "terminals": (n,),
            "truncations": (n,),
            "states": (s,),
            "next_observations": (n, o),
            "next_states": (s,),
        }
        self.data = {key: np.zeros((capacity, *shape), "float32") for key, shape in shapes.items()}
        self.size = 0

    def add(self, **row: np.ndarray) -> None:
        for key in self.FIELDS:
            self.data[key][self.size] = row[key]
        self.size += 1

    def sample(self, rng: np.random.Generator, num_batches: int, batch_size: int) -> Dict[str, np.ndarray]:
        index = rng.integers(0, self.size, (num_batches, batch_size))
        batch = {
            key: self.data[key][index]
            for key in ("observations", "actions", "states", "next_observations", "next_states")
        }
        from og_marl_omsd.models.losses import team_reward  # TensorFlow is imported on first use only

        batch["rewards"] = team_reward(self.data["rewards"][index])  # (K, B)
        batch["terminals"] = self.data["terminals"][index].max(axis=-1)
        return batch

    def save_rows(self, path: str, start: int, end: int) -> None:
        with atomic_file(path, "wb") as handle:
            np.savez(handle, **{key: value[start:end] for key, value in self.data.items()})  # type: ignore[arg-type]

    def load_rows(self, path: str, start: int) -> int:
        with np.load(path) as stored:
            count = stored["actions"].shape[0]
            for key in self.FIELDS:
                self.data[key][start : start + count] = stored[key]
        self.size = max(self.size, start + count)
        return count
