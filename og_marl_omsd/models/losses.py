"""The formulas, written once: noise schedule, noising, expectile loss, diffusion loss, actor
surrogate and its update direction, AdamW's decoupled decay, the actors' cosine learning-rate decay
and the team reward.

Pure functions of tensors; the modules and systems call these and nothing else for maths.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf

BETA_MIN = 0.1  # VP-SDE linear beta schedule (SRPO's)
BETA_MAX = 20.0


def vp_schedule(t: tf.Tensor, beta_min: float = BETA_MIN, beta_max: float = BETA_MAX) -> Tuple[tf.Tensor, tf.Tensor]:
    """VP-SDE marginal coefficients ``(alpha_t, sigma_t)`` with ``x_t = alpha_t x + sigma_t z``.

    ``log alpha_t = -0.25 t^2 (beta_max - beta_min) - 0.5 t beta_min``,
    ``sigma_t = sqrt(1 - alpha_t^2)``.
    """
    t = tf.convert_to_tensor(t, tf.float32)
    log_alpha = -0.25 * tf.square(t) * (beta_max - beta_min) - 0.5 * t * beta_min
    alpha = tf.exp(log_alpha)
    sigma = tf.sqrt(-tf.math.expm1(2.0 * log_alpha))  # sqrt(1 - alpha^2), accurate near t = 0
    return alpha, sigma


def noised(actions: tf.Tensor, alpha: tf.Tensor, sigma: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """The VP forward process ``x_t = alpha_t x + sigma_t z`` for ``(B, N, A)`` actions and ``(B,)``
    coefficients (from :func:`vp_schedule`)."""
    return alpha[:, None, None] * actions + sigma[:, None, None] * noise


def team_reward(rewards: Any) -> Any:
    """The team reward: the mean over agents (the last axis) of per-agent rewards, for TF
    tensors and NumPy arrays alike (the dtype is kept)."""
    if isinstance(rewards, (tf.Tensor, tf.Variable)):
        return tf.reduce_mean(rewards, axis=-1)
    return np.asarray(rewards).mean(axis=-1)


def team_step_reward(rewards: Mapping[str, Any]) -> float:
    """The team reward of one environment step given as ``{agent: reward}`` (mean over agents)."""
    return float(np.mean(list(rewards.values())))


def decoupled_weight_decay(variables: Sequence[tf.Variable], decay: float) -> None:
    """AdamW's decoupled weight decay ``v <- v - decay v`` (``decay`` = learning rate x weight
    decay), applied before the Adam step."""
    for variable in variables:
        variable.assign_sub(decay * variable)


def expectile_loss(diff: tf.Tensor, expectile: float) -> tf.Tensor:
    """IQL's asymmetric L2: ``mean(|tau - 1[diff < 0]| * diff^2)`` with ``diff = target - v``."""
    weight = tf.where(diff > 0.0, expectile, 1.0 - expectile)
    return tf.reduce_mean(weight * tf.square(diff))


def denoising_loss(predicted_noise: tf.Tensor, noise: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """Epsilon-prediction loss: squared error summed over all action dims, mean over the batch.

    Args:
        predicted_noise, noise: ``(B, N, A)``.
        mask: optional ``(B,)`` weights of valid samples.
    """
    per_sample = tf.reduce_sum(tf.square(predicted_noise - noise), axis=[1, 2])
    if mask is None:
        return tf.reduce_mean(per_sample)
    return tf.reduce_sum(per_sample * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def ddim_update(noisy: tf.Tensor, predicted_noise: tf.Tensor, t: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
    """One deterministic DDIM step of the VP process from time ``t`` to ``s < t`` (``(B,)`` each):
    ``x0 = (x_t - sigma_t e) / alpha_t``, ``x_s = alpha_s x0 + sigma_s e`` for ``(B, N, A)`` tensors."""
    alpha_t, sigma_t = vp_schedule(t)
    alpha_s, sigma_s = vp_schedule(s)
    expand = lambda x: x[:, None, None]  # noqa: E731
    clean = (noisy - expand(sigma_t) * predicted_noise) / expand(alpha_t)
    return expand(alpha_s) * clean + expand(sigma_s) * predicted_noise


def cosine_decay(initial_rate: float, step: tf.Tensor, total: tf.Tensor) -> tf.Tensor:
    """The learning rate at ``step`` of ``total``: cosine decay from ``initial_rate`` to 0 (and 0
    after ``total``), computed in float64, returned as float32 (the actors' Adam rate)."""
    progress = tf.minimum(tf.cast(step, tf.float64) / tf.cast(total, tf.float64), 1.0)
    return tf.cast(initial_rate * 0.5 * (1.0 + tf.cos(math.pi * progress)), tf.float32)


# The regulariser's weight w(t) = sigma_t ** power: SRPO's sigma_t^2, or 1 (mode-seeking).
SCORE_WEIGHT_POWERS = {"sigma_squared": 2.0, "one": 0.0}


def score_regulariser(predicted_noise: tf.Tensor, noise: tf.Tensor, subtract_noise: bool = True) -> tf.Tensor:
    """The behaviour term of the actor update before its weight: ``e_i - z_i`` (the paper's form)
    or ``e_i`` (SRPO's code)."""
    return predicted_noise - noise if subtract_noise else predicted_noise


def score_regularised_actor_loss(
    actions: tf.Tensor,
    predicted_noise: tf.Tensor,
    noise: tf.Tensor,
    q_gradient: tf.Tensor,
    weight: tf.Tensor,
    beta: float,
    subtract_noise: bool = True,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Surrogate whose gradient is the paper's eq. 13 (SRPO's score-regularised update).

    ``loss_i = mean_b( w(t) <sg(e_i - z_i), a_i> - beta <sg(g_i), a_i> )``: its gradient in
    ``a_i`` is ``(w (e_i - z_i) - beta g_i) / B`` per sample, i.e. the behaviour score
    ``-e_i / sigma`` pulls ``a_i`` toward the data and ``beta g_i`` toward higher Q.

    Args:
        actions: ``(B, N, A)`` actor outputs (the only input that carries gradient).
        predicted_noise: ``(B, N, A)`` the behaviour models' ``e_i`` at the noised actions.
        noise: ``(B, N, A)`` the noise ``z_i`` used to noise the actions.
        q_gradient: ``(B, N, A)`` ``g_i = dQ/da_i`` at the actors' joint action.
        weight: ``(B,)`` ``w(t)``.
        beta: greediness; larger beta = weaker regularisation.
        subtract_noise: use ``e_i - z_i`` (the paper's form) or ``e_i`` (SRPO's code).

    Returns:
        ``(total, per_agent)``: the sum over agents, and the ``(N,)`` per-agent losses.
    """
    regulariser = score_regulariser(predicted_noise, noise, subtract_noise)
    per_sample = (
        weight[:, None, None] * tf.stop_gradient(regulariser) * actions - beta * tf.stop_gradient(q_gradient) * actions
    )  # (B,N,A)
    per_agent = tf.reduce_mean(tf.reduce_sum(per_sample, axis=-1), axis=0)  # (N,)
    return tf.reduce_sum(per_agent), per_agent


def behaviour_cloning_loss(actions: tf.Tensor, dataset_actions: tf.Tensor) -> tf.Tensor:
    """Deterministic behaviour cloning: ``sum_i mean_b ||pi_i(o_i) - a_i||^2`` over agents.

    Args:
        actions: ``(B, N, A)`` actor outputs.
        dataset_actions: ``(B, N, A)`` the dataset's actions at the same observations.
    """
    return tf.reduce_sum(tf.reduce_mean(tf.reduce_sum(tf.square(actions - dataset_actions), axis=-1), axis=0))
