"""Behaviour diffusion models: one Sonnet module, three factorisations of the joint score.

- ``independent`` (BRPO-Ind, BRPO-FAC): ``eps_i(a_i, t | s)`` per agent;
- ``sequential`` (OMSD): ``eps_i(a_i, t | s, a_<i)`` with the prefix actions clean, in
  ``agent_order``; the first agent has no prefix;
- ``joint`` (BRPO-JAL): ``eps(a, t | s)`` on the concatenated joint action.

With ``shared=True`` one network serves all agents (agent one-hot input; for the sequential
factorisation the prefix is the joint action zero-padded and masked to the prefix agents).

The condition is the global state ``s`` ``(B, S)``, read by every agent, or one condition per
agent ``(B, N, O)`` (the authors' choice: agent i's own observation ``o_i``; the joint score
reads all of them concatenated); the networks take the width of whichever they are given.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import sonnet as snt
import tensorflow as tf

from og_marl_omsd.models.fast_random import hashed_dropout
from og_marl_omsd.models.losses import ddim_update, denoising_loss, noised, vp_schedule
from og_marl_omsd.models.stacked import StackedLayerNorm, StackedLinear, StackedMLP

FACTORISATIONS = ("independent", "sequential", "joint")


class GaussianFourierTime(snt.Module):
    """Fixed random Fourier features of the diffusion time, then an MLP to ``time_dim``
    (one set of frequencies and one MLP per group)."""

    def __init__(
        self,
        time_dim: int = 128,
        num_frequencies: int = 32,
        scale: float = 30.0,
        groups: int = 1,
        name: Optional[str] = None,
    ):
        super().__init__(name=name)
        self._frequencies = tf.Variable(
            tf.random.normal([groups, num_frequencies]) * scale, trainable=False, name="frequencies"
        )
        self._mlp = StackedMLP(groups, [time_dim, time_dim], activation=tf.nn.silu, name="time_mlp")

    def __call__(self, t: tf.Tensor) -> tf.Tensor:
        """``t (B,)`` -> ``(G, B, time_dim)``."""
        angles = 2.0 * math.pi * t[None, :, None] * self._frequencies[:, None, :]
        return self._mlp(tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1))


class ScoreNet(snt.Module):
    """SRPO-style noise predictor ``eps(x_t, t | c)`` with a residual MLP trunk, for ``groups``
    independent networks at once (stacked weights, one batched matmul per layer).

    Input ``concat[x_t, c, time_features, padded]`` -> Linear(width) -> ``num_blocks`` residual
    blocks (dropout, LayerNorm, Linear(hidden), SiLU, Linear(width)) -> SiLU -> Linear(out).
    ``padded`` holds inputs that some groups read only in part (zero elsewhere; ``padding``
    gives each group's count of padded columns, see :class:`~og_marl_omsd.models.stacked.StackedLinear`).
    """

    def __init__(
        self,
        output_dim: int,
        width: int = 256,
        hidden: int = 1024,
        num_blocks: int = 3,
        time_dim: int = 128,
        dropout: float = 0.1,
        groups: int = 1,
        padding: Optional[Sequence[int]] = None,
        name: Optional[str] = None,
    ):
        super().__init__(name=name)
        for label, value in (("output_dim", output_dim), ("width", width), ("hidden", hidden), ("time_dim", time_dim)):
            if value < 1:
                raise ValueError(f"ScoreNet {label} must be positive, got {value}.")
        if num_blocks < 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"ScoreNet needs num_blocks >= 0 and dropout in [0, 1); got {num_blocks}, {dropout}.")
        self._dropout = dropout
        self._time = GaussianFourierTime(time_dim, groups=groups)
        self._input = StackedLinear(groups, width, padding=padding, name="input")
        self._blocks = [
            (
                StackedLayerNorm(groups, name=f"norm_{k}"),
                StackedLinear(groups, hidden, name=f"expand_{k}"),
                StackedLinear(groups, width, name=f"contract_{k}"),
            )
            for k in range(num_blocks)
        ]
        self._output = StackedLinear(groups, output_dim, name="output")

    def __call__(
        self,
        noisy: tf.Tensor,
        t: tf.Tensor,
        condition: tf.Tensor,
        is_training: bool = False,
        dropout_seed: Optional[tf.Tensor] = None,
        padded: Optional[tf.Tensor] = None,
    ) -> tf.Tensor:
        """``noisy (G, B, a)``, ``t (B,)``, ``condition (G, B, c)``, ``padded (G, B, p)`` -> ``(G, B, out)``.

        ``dropout_seed`` (shape ``[2]``) makes the dropout masks a function of the seed
        (:func:`~og_marl_omsd.models.fast_random.hashed_dropout`: stateless, and far cheaper than
        Philox under XLA on a CPU; XLA ignores the seeds of ``tf.nn.dropout``)."""
        inputs = [noisy, condition, self._time(t)] + ([] if padded is None else [padded])
        h = self._input(tf.concat(inputs, axis=-1))
        for k, (norm, expand, contract) in enumerate(self._blocks):
            x = h
            if is_training and self._dropout > 0:
                if dropout_seed is None:
                    x = tf.nn.dropout(h, self._dropout)
                else:
                    block_seed = tf.random.experimental.stateless_fold_in(dropout_seed, k)
                    x = hashed_dropout(h, self._dropout, block_seed)
            h = h + contract(tf.nn.silu(expand(norm(x))))
        return self._output(tf.nn.silu(h))


class BehaviourDiffusion(snt.Module):
    """Behaviour model of the joint action with an independent, sequential or joint score.

    All tensors are agent-major: actions ``(B, N, A)``, time ``(B,)``, and the condition either
    the state ``(B, S)`` or one per agent ``(B, N, O)`` (the observations).
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
        net: Dict[str, Any] = dict(
            width=width, hidden=hidden, num_blocks=num_blocks, time_dim=time_dim, dropout=dropout
        )
        if factorisation == "joint":
            self._net = ScoreNet(num_agents * action_dim, name="joint_score", **net)
        elif self.shared:
            self._net = ScoreNet(action_dim, name="shared_score", **net)
        else:
            # One network per agent, stacked (group g = agent g). Sequential: agent i reads the
            # clean actions of the agents before it, zero-padded to N - 1 agents.
            position = {agent: p for p, agent in enumerate(order)}
            prefix_widths = [
                position[i] * action_dim if factorisation == "sequential" else 0 for i in range(num_agents)
            ]
            self._prefix_widths = prefix_widths
            self._net = ScoreNet(
                action_dim,
                groups=num_agents,
                name="agent_scores",
                **net,
                padding=[(num_agents - 1) * action_dim - w for w in prefix_widths]
                if factorisation == "sequential"
                else None,
            )

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
            state: the condition: ``(B, S)`` the state, read by every agent, or ``(B, N, O)`` one
                per agent (agent i reads row i; the joint score reads them concatenated).
            clean_actions: ``(B, N, A)`` clean actions the sequential prefix is read from
                (required for ``sequential``; ignored otherwise).
            is_training: dropout on.
            dropout_seed: ``[2]`` seed of the dropout masks (stateless); ``None``: stateful dropout.
        """
        batch = tf.shape(noisy_actions)[0]
        n, d = self.num_agents, self.action_dim
        per_agent = state.shape.rank == 3
        if self.factorisation == "joint":
            joint = tf.reshape(state, [batch, n * state.shape[-1]]) if per_agent else state
            eps = self._net(tf.reshape(noisy_actions, [1, batch, n * d]), t, joint[None], is_training, dropout_seed)
            return tf.reshape(eps[0], [batch, n, d])
        if self.factorisation == "sequential" and clean_actions is None:
            raise ValueError("The sequential factorisation needs clean_actions for the prefix a_<i.")
        noisy = tf.transpose(noisy_actions, [1, 0, 2])  # (N,B,A), agent-major
        states = tf.transpose(state, [1, 0, 2]) if per_agent else tf.tile(state[None], [n, 1, 1])  # (N,B,S|O)
        if self.shared:
            condition = [states, tf.tile(tf.eye(n)[:, None, :], [1, batch, 1])]
            if self.factorisation == "sequential":
                position = {agent: p for p, agent in enumerate(self.agent_order)}
                masks = tf.constant([[1.0 if position[j] < position[i] else 0.0 for j in range(n)] for i in range(n)])
                assert clean_actions is not None  # checked above
                masked = clean_actions[None] * masks[:, None, :, None]  # (N,B,N,A)
                condition += [tf.reshape(masked, [n, batch, n * d]), tf.tile(masks[:, None, :], [1, batch, 1])]
            flat = lambda x: tf.reshape(x, [1, n * batch, x.shape[-1]])  # noqa: E731 (all agents as one batch)
            eps = self._net(flat(noisy), tf.tile(t, [n]), flat(tf.concat(condition, -1)), is_training, dropout_seed)
            return tf.transpose(tf.reshape(eps, [n, batch, d]), [1, 0, 2])
        padded = None
        if self.factorisation == "sequential" and n > 1:
            ordered = tf.reshape(tf.gather(clean_actions, self.agent_order, axis=1), [batch, n * d])[:, : (n - 1) * d]
            masks = tf.constant([[1.0 if c < w else 0.0 for c in range((n - 1) * d)] for w in self._prefix_widths])
            padded = ordered[None] * masks[:, None, :]  # (N,B,(N-1)A): agent i's prefix a_<i, then zeros
        eps = self._net(noisy, t, states, is_training, dropout_seed, padded=padded)
        return tf.transpose(eps, [1, 0, 2])

    def sample(self, state: tf.Tensor, num_steps: int, noise: tf.Tensor, t_end: float = 1e-3) -> tf.Tensor:
        """One joint action per condition ``state`` (as in :meth:`noise_prediction`) by the
        deterministic DDIM sampler (``num_steps`` steps from ``t = 1`` to ``t_end``), starting
        from ``noise (B, N, A)``.

        Sequential: agent by agent in ``agent_order``, each denoised with the clean actions
        already sampled for the agents before it (the factorisation's ancestral order); the
        other factorisations denoise all agents together.
        """
        times = tf.linspace(1.0, t_end, num_steps + 1)
        batch = tf.shape(state)[0]

        def denoise(x, clean, update_mask):
            def body(k, x):
                t = tf.fill([batch], times[k])
                s = tf.fill([batch], times[k + 1])
                eps = self.noise_prediction(x, t, state, clean)
                return k + 1, tf.ensure_shape(x + update_mask * (ddim_update(x, eps, t, s) - x), x.shape)

            return tf.while_loop(lambda k, _: k < num_steps, body, (tf.constant(0), x))[1]

        x = noise
        if self.factorisation != "sequential":
            return denoise(x, x, tf.ones_like(x))
        clean = tf.zeros_like(x)
        for agent in self.agent_order:
            mask = tf.one_hot(agent, self.num_agents)[None, :, None]
            x = denoise(x, clean, mask)
            clean = clean + mask * x
        return clean

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
        noisy = noised(actions, alpha, sigma, noise)
        dropout_seed = rng.make_seeds(1)[:, 0] if self.dropout > 0 else None
        predicted = self.noise_prediction(
            noisy, t, state, clean_actions=actions, is_training=True, dropout_seed=dropout_seed
        )
        return denoising_loss(predicted, noise, mask)
