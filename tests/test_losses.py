"""The formulas against closed forms and plain loops."""

import numpy as np
import pytest
import tensorflow as tf

from og_marl_omsd.models.losses import (
    SCORE_WEIGHT_POWERS,
    denoising_loss,
    expectile_loss,
    score_regularised_actor_loss,
    vp_schedule,
)


@pytest.mark.parametrize("t", [1e-3, 0.02, 0.1, 0.5, 0.98, 1.0])
def test_vp_schedule_matches_closed_form(t):
    alpha, sigma = vp_schedule(tf.constant([t]))
    expected_alpha = np.exp(-0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1)
    np.testing.assert_allclose(alpha.numpy()[0], expected_alpha, rtol=1e-5)
    np.testing.assert_allclose(sigma.numpy()[0], np.sqrt(1.0 - expected_alpha**2), rtol=1e-4)


def test_vp_schedule_endpoints_and_monotone():
    t = tf.linspace(0.0, 1.0, 101)
    alpha, sigma = vp_schedule(t)
    assert alpha.numpy()[0] == pytest.approx(1.0) and sigma.numpy()[0] == pytest.approx(0.0, abs=1e-6)
    assert alpha.numpy()[-1] == pytest.approx(np.exp(-5.025), rel=1e-5)
    assert np.all(np.diff(alpha.numpy()) < 0) and np.all(np.diff(sigma.numpy()) > 0)
    np.testing.assert_allclose(alpha.numpy() ** 2 + sigma.numpy() ** 2, 1.0, rtol=1e-5)


@pytest.mark.parametrize("expectile", [0.5, 0.7, 0.9])
def test_expectile_loss_equals_plain_loop(expectile):
    diff = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    expected = 0.0
    for value in diff.ravel():
        weight = expectile if value > 0 else 1.0 - expectile
        expected += weight * value**2
    expected /= diff.size
    assert float(expectile_loss(tf.constant(diff), expectile)) == pytest.approx(expected, rel=1e-5)


def test_expectile_above_half_pushes_value_up():
    # V minimising the expectile loss to samples sits above their mean for tau > 0.5.
    samples = tf.constant(np.random.default_rng(1).normal(size=4000).astype("float32"))
    grid = np.linspace(-1, 1, 401)
    best = grid[np.argmin([float(expectile_loss(samples - v, 0.7)) for v in grid])]
    assert best > float(tf.reduce_mean(samples)) + 0.2


def test_denoising_loss_equals_plain_loop():
    rng = np.random.default_rng(2)
    pred, noise = rng.normal(size=(2, 8, 3, 2)).astype("float32")
    mask = np.array([1, 0, 1, 1, 0, 1, 1, 1], "float32")
    per_sample = [sum((pred[b, n, a] - noise[b, n, a]) ** 2 for n in range(3) for a in range(2)) for b in range(8)]
    assert float(denoising_loss(tf.constant(pred), tf.constant(noise))) == pytest.approx(np.mean(per_sample), rel=1e-5)
    masked = sum(p * m for p, m in zip(per_sample, mask)) / mask.sum()
    assert float(denoising_loss(tf.constant(pred), tf.constant(noise), tf.constant(mask))) == pytest.approx(
        masked, rel=1e-5
    )


@pytest.mark.parametrize("subtract_noise", [True, False])
def test_actor_loss_gradient_equals_algorithm_formula(subtract_noise):
    rng = np.random.default_rng(3)
    batch, agents, dims, beta = 16, 3, 2, 0.37
    actions = tf.Variable(rng.uniform(-1, 1, (batch, agents, dims)).astype("float32"))
    eps, z, g = (tf.constant(rng.normal(size=(batch, agents, dims)).astype("float32")) for _ in range(3))
    t = tf.constant(rng.uniform(0.02, 0.98, batch).astype("float32"))
    _, sigma = vp_schedule(t)
    weight = sigma ** SCORE_WEIGHT_POWERS["sigma_squared"]
    with tf.GradientTape() as tape:
        total, per_agent = score_regularised_actor_loss(actions, eps, z, g, weight, beta, subtract_noise)
    gradient = tape.gradient(total, actions).numpy()
    regulariser = (eps - z).numpy() if subtract_noise else eps.numpy()
    expected = (sigma.numpy()[:, None, None] ** 2 * regulariser - beta * g.numpy()) / batch
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-7)
    assert per_agent.shape == (agents,)
    assert float(total) == pytest.approx(float(tf.reduce_sum(per_agent)), rel=1e-6)


def test_actor_loss_gradient_ignores_score_and_q_inputs():
    actions = tf.Variable(tf.ones([4, 2, 1]))
    eps, z, g = tf.Variable(tf.ones([4, 2, 1])), tf.zeros([4, 2, 1]), tf.Variable(tf.ones([4, 2, 1]))
    with tf.GradientTape() as tape:
        total, _ = score_regularised_actor_loss(actions, eps, z, g, tf.ones([4]), 1.0)
    grads = tape.gradient(total, [eps, g])
    assert all(grad is None for grad in grads)  # stop-gradients: only the actions carry gradient


def test_cosine_decay_runs_from_the_initial_rate_to_zero_and_stays_there():
    from og_marl_omsd.models.losses import cosine_decay

    rates = [float(cosine_decay(2e-3, tf.constant(step, tf.int64), tf.constant(8, tf.int64))) for step in range(11)]
    expected = [2e-3 * 0.5 * (1 + np.cos(np.pi * min(step / 8, 1.0))) for step in range(11)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=1e-12)
    assert rates[0] == pytest.approx(2e-3) and rates[4] == pytest.approx(1e-3) and rates[8:] == [0.0, 0.0, 0.0]
    assert cosine_decay(1.0, tf.constant(1), tf.constant(2)).dtype == tf.float32
