"""IQL critics (joint and per-agent) and deterministic actors (decentralised or centralised)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import sonnet as snt
import tensorflow as tf

from og_marl_omsd.losses import expectile_loss

CRITIC_KINDS = ("joint", "independent")


class IQLCritic(snt.Module):
    """Twin Q heads with Polyak targets and a state value ``V``, trained by IQL.

    ``kind="joint"``: ``Q_tot(s, a)`` and ``V(s)`` (one head, K = 1).
    ``kind="independent"``: ``Q^i(s, a_i)`` and ``V^i(s)`` per agent (K = N), each on the
    agent's own action and the team reward.
    """

    def __init__(
        self,
        kind: str,
        num_agents: int,
        hidden_sizes: Sequence[int] = (256, 256),
        name: Optional[str] = None,
    ):
        super().__init__(name=name or f"{kind}_critic")
        if kind not in CRITIC_KINDS:
            raise ValueError(f"Unknown critic kind {kind!r}; choose one of {', '.join(CRITIC_KINDS)}.")
        self.kind = kind
        self.num_agents = num_agents
        heads = 1 if kind == "joint" else num_agents
        sizes = [*hidden_sizes, 1]

        def mlps(label: str) -> list:
            return [snt.nets.MLP(sizes, name=f"{label}_{k}") for k in range(heads)]

        self._q = (mlps("q1"), mlps("q2"))
        self._q_target = (mlps("q1_target"), mlps("q2_target"))
        self._v = mlps("v")

    def _inputs(self, state: tf.Tensor, actions: tf.Tensor) -> list:
        if self.kind == "joint":
            batch = tf.shape(actions)[0]
            return [tf.concat([state, tf.reshape(actions, [batch, -1])], axis=-1)]
        return [tf.concat([state, actions[:, i]], axis=-1) for i in range(self.num_agents)]

    @staticmethod
    def _heads(mlps: list, inputs: list) -> tf.Tensor:
        return tf.concat([mlp(x) for mlp, x in zip(mlps, inputs)], axis=-1)  # (B,K)

    def q_values(self, state: tf.Tensor, actions: tf.Tensor, target: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
        """Both Q heads, each ``(B, K)``."""
        inputs = self._inputs(state, actions)
        q1, q2 = self._q_target if target else self._q
        return self._heads(q1, inputs), self._heads(q2, inputs)

    def values(self, state: tf.Tensor) -> tf.Tensor:
        """``V(s)``, ``(B, K)``."""
        return self._heads(self._v, [state] * len(self._v))

    def action_gradient(self, state: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        """``g_i = d/da_i mean(Q1_targ, Q2_targ)`` (joint) or ``d/da_i Q^i_targ(s, a_i)``, ``(B, N, A)``."""
        with tf.GradientTape() as tape:
            tape.watch(actions)
            q1, q2 = self.q_values(state, actions, target=True)
            total = tf.reduce_sum(0.5 * (q1 + q2))
        return tape.gradient(total, actions)

    @property
    def q_variables(self) -> tuple:
        return tuple(v for mlp in (*self._q[0], *self._q[1]) for v in mlp.trainable_variables)

    @property
    def target_variables(self) -> tuple:
        return tuple(v for mlp in (*self._q_target[0], *self._q_target[1]) for v in mlp.trainable_variables)

    @property
    def value_variables(self) -> tuple:
        return tuple(v for mlp in self._v for v in mlp.trainable_variables)

    def value_loss(self, state: tf.Tensor, actions: tf.Tensor, expectile: float) -> tf.Tensor:
        """Expectile regression of ``V(s)`` to ``min(Q1_targ, Q2_targ)(s, a_data)``."""
        q1, q2 = self.q_values(state, actions, target=True)
        return expectile_loss(tf.stop_gradient(tf.minimum(q1, q2)) - self.values(state), expectile)

    def q_loss(self, state, actions, reward, next_state, done, mask, discount: float) -> tf.Tensor:
        """MSE of each Q head to ``r + gamma (1 - done) V(s')`` (no target V)."""
        target = tf.stop_gradient(reward[:, None] + discount * (1.0 - done[:, None]) * self.values(next_state))
        q1, q2 = self.q_values(state, actions)
        squared = (tf.square(q1 - target) + tf.square(q2 - target)) * mask[:, None]
        return tf.reduce_sum(squared) / tf.maximum(tf.reduce_sum(mask) * tf.cast(tf.shape(q1)[1], tf.float32), 1.0)

    def initialise_targets(self) -> None:
        for target, online in zip(self.target_variables, self.q_variables):
            target.assign(online)

    def update_targets(self, rate: float) -> None:
        for target, online in zip(self.target_variables, self.q_variables):
            target.assign((1.0 - rate) * target + rate * online)


class DeterministicActors(snt.Module):
    """Deterministic tanh actors ``a_i = pi_i(o_i)``.

    ``centralised=False``: one MLP per agent on its local observation (or one shared MLP
    with the agent one-hot appended when ``shared=True``).
    ``centralised=True`` (BRPO-JAL): one MLP on all agents' observations, for the joint action.
    """

    def __init__(
        self,
        num_agents: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        shared: bool = False,
        centralised: bool = False,
        name: Optional[str] = None,
    ):
        super().__init__(name=name or ("centralised_actor" if centralised else "actors"))
        self.num_agents = num_agents
        self.action_dim = action_dim
        self.shared = shared and not centralised
        self.centralised = centralised
        sizes = list(hidden_sizes)
        if centralised:
            self._mlps = [snt.nets.MLP([*sizes, num_agents * action_dim], name="joint_policy")]
        elif self.shared:
            self._mlps = [snt.nets.MLP([*sizes, action_dim], name="shared_policy")]
        else:
            self._mlps = [snt.nets.MLP([*sizes, action_dim], name=f"agent_{i}_policy") for i in range(num_agents)]

    def __call__(self, observations: tf.Tensor) -> tf.Tensor:
        """``observations (B, N, O)`` -> actions ``(B, N, A)`` in [-1, 1]."""
        batch = tf.shape(observations)[0]
        n = self.num_agents
        if self.centralised:
            joint = self._mlps[0](tf.reshape(observations, [batch, -1]))
            return tf.reshape(tf.tanh(joint), [batch, n, self.action_dim])
        if self.shared:
            ids = tf.tile(tf.eye(n)[None], [batch, 1, 1])
            flat = tf.reshape(tf.concat([observations, ids], -1), [batch * n, -1])
            return tf.reshape(tf.tanh(self._mlps[0](flat)), [batch, n, self.action_dim])
        return tf.stack([tf.tanh(mlp(observations[:, i])) for i, mlp in enumerate(self._mlps)], axis=1)
