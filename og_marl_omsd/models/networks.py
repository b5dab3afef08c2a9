"""IQL critics (joint and per-agent) and deterministic actors (decentralised or centralised).

Per-agent networks and twin Q heads are stacked (:mod:`og_marl_omsd.models.stacked`): one batched
matmul per layer for all agents and heads, the same maths as one MLP each."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import sonnet as snt
import tensorflow as tf

from og_marl_omsd.models.losses import expectile_loss
from og_marl_omsd.models.stacked import StackedMLP

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
        self.heads = 1 if kind == "joint" else num_agents
        sizes = [*hidden_sizes, 1]
        # Twin Q heads (and, for "independent", every agent's head) run as one batched matmul:
        # groups [q1 heads..., q2 heads...]; V has one group per head.
        self._q = StackedMLP(2 * self.heads, sizes, name="q")
        self._q_target = StackedMLP(2 * self.heads, sizes, name="q_target")
        self._v = StackedMLP(self.heads, sizes, name="v")

    def _inputs(self, state: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        """Group-major inputs: ``(1, B, S + N A)`` (joint, broadcast to both heads) or
        ``(2N, B, S + A)`` (independent: agent ``i``'s own action, for Q1 and Q2)."""
        if self.kind == "joint":
            batch = tf.shape(actions)[0]
            return tf.concat([state, tf.reshape(actions, [batch, -1])], axis=-1)[None]
        n = self.num_agents
        per_agent = tf.concat([tf.tile(state[None], [n, 1, 1]), tf.transpose(actions, [1, 0, 2])], axis=-1)
        return tf.concat([per_agent, per_agent], axis=0)

    def q_values(self, state: tf.Tensor, actions: tf.Tensor, target: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
        """Both Q heads, each ``(B, K)``."""
        out = (self._q_target if target else self._q)(self._inputs(state, actions))[..., 0]  # (2K,B)
        out = tf.transpose(out)  # (B,2K)
        return out[:, : self.heads], out[:, self.heads :]

    def values(self, state: tf.Tensor) -> tf.Tensor:
        """``V(s)``, ``(B, K)``."""
        return tf.transpose(self._v(state[None])[..., 0])

    def action_gradient(self, state: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        """``g_i = d/da_i mean(Q1_targ, Q2_targ)`` (joint) or ``d/da_i Q^i_targ(s, a_i)``, ``(B, N, A)``."""
        with tf.GradientTape() as tape:
            tape.watch(actions)
            q1, q2 = self.q_values(state, actions, target=True)
            total = tf.reduce_sum(0.5 * (q1 + q2))
        return tape.gradient(total, actions)

    @property
    def q_variables(self) -> tuple:
        return tuple(self._q.trainable_variables)

    @property
    def target_variables(self) -> tuple:
        return tuple(self._q_target.trainable_variables)

    @property
    def value_variables(self) -> tuple:
        return tuple(self._v.trainable_variables)

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
            # One MLP per agent, stacked: all agents' layers run as one batched matmul.
            self._stacked = StackedMLP(num_agents, [*sizes, action_dim], name="agent_policies")

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
        per_agent = self._stacked(tf.transpose(observations, [1, 0, 2]))  # (N,B,A)
        return tf.transpose(tf.tanh(per_agent), [1, 0, 2])
