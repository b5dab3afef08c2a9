"""Behaviour diffusion models: one Sonnet module, three factorisations of the joint score.

- ``independent`` (BRPO-Ind, BRPO-FAC): ``eps_i(a_i, t | s)`` per agent;
- ``sequential`` (OMSD): ``eps_i(a_i, t | s, a_<i)`` with the prefix actions clean, in
  ``agent_order``; the first agent has no prefix;
- ``joint`` (BRPO-JAL): ``eps(a, t | s)`` on the concatenated joint action.

With ``shared=True`` one network serves all agents (agent one-hot input; for the sequential
factorisation the prefix is the joint action zero-padded and masked to the prefix agents).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import sonnet as snt
import tensorflow as tf

from og_marl_omsd.losses import denoising_loss, vp_schedule

FACTORISATIONS = ("independent", "sequential", "joint")


class GaussianFourierTime(snt.Module):
    """Fixed random Fourier features of the diffusion time, then an MLP to ``time_dim``."""

    def __init__(self, time_dim: int = 128, num_frequencies: int = 32, scale: float = 30.0, name: Optional[str] = None):
        super().__init__(name=name)
        self._frequencies = tf.Variable(
            tf.random.normal([num_frequencies]) * scale, trainable=False, name="frequencies"
        )
        self._mlp = snt.nets.MLP([time_dim, time_dim], activation=tf.nn.silu, name="time_mlp")

    def __call__(self, t: tf.Tensor) -> tf.Tensor:
        angles = 2.0 * math.pi * t[:, None] * self._frequencies[None, :]
        return self._mlp(tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1))


class ScoreNet(snt.Module):
    """SRPO-style noise predictor: ``eps(x_t, t | c)`` with a residual MLP trunk.

    Input ``concat[x_t, c, time_features]`` -> Linear(width) -> ``num_blocks`` residual
    blocks (dropout, LayerNorm, Linear(hidden), SiLU, Linear(width)) -> SiLU -> Linear(out).
    """

    def __init__(
        self,
        output_dim: int,
        width: int = 256,
        hidden: int = 1024,
        num_blocks: int = 3,
        time_dim: int = 128,
        dropout: float = 0.1,
        name: Optional[str] = None,
    ):
        super().__init__(name=name)
        for label, value in (("output_dim", output_dim), ("width", width), ("hidden", hidden), ("time_dim", time_dim)):
            if value < 1:
                raise ValueError(f"ScoreNet {label} must be positive, got {value}.")
        if num_blocks < 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"ScoreNet needs num_blocks >= 0 and dropout in [0, 1); got {num_blocks}, {dropout}.")
        self._dropout = dropout
        self._time = GaussianFourierTime(time_dim)
        self._input = snt.Linear(width, name="input")
        self._blocks = [
            (snt.LayerNorm(-1, True, True, name=f"norm_{k}"), snt.Linear(hidden, name=f"expand_{k}"),
             snt.Linear(width, name=f"contract_{k}"))
            for k in range(num_blocks)
        ]
        self._output = snt.Linear(output_dim, name="output")

    def __call__(self, noisy: tf.Tensor, t: tf.Tensor, condition: tf.Tensor, is_training: bool = False,
                 dropout_seed: Optional[tf.Tensor] = None) -> tf.Tensor:
        """``dropout_seed`` (shape ``[2]``) makes the dropout masks a function of the seed
        (stateless; XLA ignores the seeds of ``tf.nn.dropout``)."""
        h = self._input(tf.concat([noisy, condition, self._time(t)], axis=-1))
        for k, (norm, expand, contract) in enumerate(self._blocks):
            x = h
            if is_training and self._dropout > 0:
                if dropout_seed is None:
                    x = tf.nn.dropout(h, self._dropout)
                else:
                    block_seed = tf.random.experimental.stateless_fold_in(dropout_seed, k)
                    x = tf.nn.experimental.stateless_dropout(h, self._dropout, seed=block_seed)
            h = h + contract(tf.nn.silu(expand(norm(x))))
        return self._output(tf.nn.silu(h))


class BehaviourDiffusion(snt.Module):
    """Behaviour model of the joint action with an independent, sequential or joint score.

    All tensors are agent-major: actions ``(B, N, A)``, state ``(B, S)``, time ``(B,)``.
    """

    def __init__(
        self,
        factorisation: str,
        num_agents: int,
        action_dim: int,
        agent_order: Optional[Sequence[int]] = None,
        shared: bool = False,
        width: int = 256,
        hidden: int = 1024,
        num_blocks: int = 3,
        time_dim: int = 128,
        dropout: float = 0.1,
        name: Optional[str] = None,
    ):
        super().__init__(name=name or f"{factorisation}_behaviour_model")
        if factorisation not in FACTORISATIONS:
            raise ValueError(f"Unknown factorisation {factorisation!r}; choose one of {', '.join(FACTORISATIONS)}.")
        if num_agents < 1 or action_dim < 1:
            raise ValueError(f"num_agents and action_dim must be positive, got {num_agents}, {action_dim}.")
        order = list(range(num_agents)) if agent_order is None else [int(i) for i in agent_order]
        if sorted(order) != list(range(num_agents)):
            raise ValueError(f"agent_order must be a permutation of 0..{num_agents - 1}, got {list(order)}.")
        self.factorisation = factorisation
        self.num_agents = num_agents
        self.action_dim = action_dim
        self.agent_order = order
        self.shared = shared and factorisation != "joint"
        self.dropout = float(dropout)
        net = dict(width=width, hidden=hidden, num_blocks=num_blocks, time_dim=time_dim, dropout=dropout)
        if factorisation == "joint":
            self._nets: List[ScoreNet] = [ScoreNet(num_agents * action_dim, name="joint_score", **net)]
        elif self.shared:
            self._nets = [ScoreNet(action_dim, name="shared_score", **net)]
        else:
            self._nets = [ScoreNet(action_dim, name=f"agent_{i}_score", **net) for i in range(num_agents)]

    def noise_prediction(
        self,
        noisy_actions: tf.Tensor,
        t: tf.Tensor,
        state: tf.Tensor,
        clean_actions: Optional[tf.Tensor] = None,
        is_training: bool = False,
        dropout_seed: Optional[tf.Tensor] = None,
    ) -> tf.Tensor:
        """``eps_i`` for every agent, ``(B, N, A)``.

        Args:
            noisy_actions: ``(B, N, A)`` noised actions.
            t: ``(B,)`` diffusion times.
            state: ``(B, S)`` conditioning state.
            clean_actions: ``(B, N, A)`` clean actions the sequential prefix is read from
                (required for ``sequential``; ignored otherwise).
            is_training: dropout on.
            dropout_seed: ``[2]`` seed of the dropout masks (stateless); ``None``: stateful dropout.
        """
        batch = tf.shape(noisy_actions)[0]
        n, d = self.num_agents, self.action_dim
        if self.factorisation == "joint":
            eps = self._nets[0](tf.reshape(noisy_actions, [batch, n * d]), t, state, is_training, dropout_seed)
            return tf.reshape(eps, [batch, n, d])
        if self.factorisation == "sequential" and clean_actions is None:
            raise ValueError("The sequential factorisation needs clean_actions for the prefix a_<i.")
        per_agent = [None] * n
        for position, agent in enumerate(self.agent_order):
            condition = [state]
            if self.shared:
                condition.append(tf.tile(tf.one_hot([agent], n), [batch, 1]))
            if self.factorisation == "sequential":
                prefix = self.agent_order[:position]
                if self.shared:
                    mask = tf.reduce_sum(tf.one_hot(prefix, n), axis=0) if prefix else tf.zeros([n])
                    masked = clean_actions * mask[None, :, None]
                    condition += [tf.reshape(masked, [batch, n * d]), tf.tile(mask[None], [batch, 1])]
                elif prefix:
                    condition.append(tf.reshape(tf.gather(clean_actions, prefix, axis=1), [batch, len(prefix) * d]))
            net = self._nets[0] if self.shared else self._nets[agent]
            seed = None if dropout_seed is None else tf.random.experimental.stateless_fold_in(dropout_seed, 1000 + agent)
            per_agent[agent] = net(noisy_actions[:, agent], t, tf.concat(condition, axis=-1), is_training, seed)
        return tf.stack(per_agent, axis=1)

    def score(self, noisy_actions, t, state, clean_actions=None) -> tf.Tensor:
        """``grad log mu_t = -eps / sigma_t``, ``(B, N, A)`` (dropout off)."""
        _, sigma = vp_schedule(t)
        return -self.noise_prediction(noisy_actions, t, state, clean_actions) / sigma[:, None, None]

    def loss(
        self, actions: tf.Tensor, state: tf.Tensor, rng: tf.random.Generator, mask: Optional[tf.Tensor] = None
    ) -> tf.Tensor:
        """Denoising loss on data ``actions (B, N, A)``: ``t ~ U[1e-3, 1]``, ``x_t = alpha a + sigma z``.

        All randomness (``t``, ``z`` and the dropout masks) comes from ``rng``, so a step is a
        function of the generator's state (reproducible and resumable).
        """
        t = rng.uniform([tf.shape(actions)[0]], 1e-3, 1.0)
        alpha, sigma = vp_schedule(t)
        noise = rng.normal(tf.shape(actions))
        noisy = alpha[:, None, None] * actions + sigma[:, None, None] * noise
        dropout_seed = rng.make_seeds(1)[:, 0] if self.dropout > 0 else None
        predicted = self.noise_prediction(noisy, t, state, clean_actions=actions, is_training=True,
                                          dropout_seed=dropout_seed)
        return denoising_loss(predicted, noise, mask)
