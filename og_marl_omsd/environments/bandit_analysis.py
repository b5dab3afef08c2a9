"""Bandit-only analysis of a trained score-regularised system: the direction its actor
update moves joint actions (the direction fields of ``baselines/bandit.py``)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from og_marl_omsd.models.losses import noised, score_regulariser, vp_schedule


def action_update_direction(system: Any, state: tf.Tensor, actions: tf.Tensor, num_samples: int = 256) -> tf.Tensor:
    """The direction the actor update of ``system`` (a pretrained
    :class:`~og_marl_omsd.systems.base.ScoreRegularisedSystem`) moves joint actions ``(G, N, A)``
    at ``state (G, S)``.

    ``-(E_{t,z}[w(t) (e_i - z_i)] - beta g_i)``: minus the surrogate's gradient in ``a_i``
    (times the batch size), averaged over ``num_samples`` draws of ``(t, z)`` per point from the
    system's own random stream; the actors follow it through their Jacobian.
    """
    if system.critic is None or system.behaviour_model is None:
        raise RuntimeError(
            "Call system.pretrain(replay_buffer) first: the direction needs the critic and behaviour model."
        )
    points = tf.shape(actions)[0]
    repeated = tf.repeat(actions, num_samples, axis=0)
    repeated_state = tf.repeat(state, num_samples, axis=0)
    t = system._rng.uniform([points * num_samples], system._t_range[0], system._t_range[1])
    alpha, sigma = vp_schedule(t)
    noise = system._rng.normal(tf.shape(repeated))
    noisy = noised(repeated, alpha, sigma, noise)
    # Every bandit agent observes what the state holds, so an observation-conditioned model reads it too.
    observations = tf.repeat(repeated_state[:, None], system.num_agents, axis=1)
    condition = system.behaviour_input(observations, repeated_state)
    predicted = system.behaviour_model.noise_prediction(noisy, t, condition, clean_actions=repeated)
    regulariser = score_regulariser(predicted, noise, system.subtract_noise)
    weighted = (sigma**system._weight_power)[:, None, None] * regulariser
    score_term = tf.reduce_mean(tf.reshape(weighted, [points, num_samples, *actions.shape[1:]]), axis=1)
    return -(score_term - system._beta * system.critic.action_gradient(state, actions))
