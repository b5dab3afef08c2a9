"""The hashed uniform numbers and dropout masks of og_marl_omsd.models.fast_random."""

import numpy as np
import pytest
import tensorflow as tf

from og_marl_omsd.models.fast_random import hashed_dropout, hashed_uniform

SEED = tf.constant([12345, -678], tf.int64)


def test_hashed_uniform_is_uniform_and_uncorrelated():
    u = hashed_uniform([1 << 18], SEED).numpy()
    assert u.dtype == np.float32 and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.003
    assert abs(u.std() - 12**-0.5) < 0.003
    counts, _ = np.histogram(u, bins=32, range=(0.0, 1.0))
    expected = len(u) / 32
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 70.0  # 31 degrees of freedom: p ~ 1e-4 at 70
    for lag in (1, 2, 128):  # neighbouring counters (rows of a mask) are independent
        assert abs(np.corrcoef(u[:-lag], u[lag:])[0, 1]) < 0.01


def test_hashed_uniform_is_a_function_of_the_seed_only():
    first = hashed_uniform([4, 8, 16], SEED).numpy()
    np.testing.assert_array_equal(first, hashed_uniform([4, 8, 16], SEED).numpy())
    compiled = tf.function(lambda s: hashed_uniform([4, 8, 16], s), jit_compile=True)
    np.testing.assert_array_equal(first, compiled(SEED).numpy())  # integer maths: same bits under XLA
    other = hashed_uniform([4, 8, 16], SEED + [0, 1]).numpy()
    assert np.mean(first == other) < 0.01
    # Seeds that differ only in one 32-bit half are still unrelated streams.
    low = hashed_uniform([4096], tf.constant([1, 0], tf.int64)).numpy()
    high = hashed_uniform([4096], tf.constant([1 << 32, 0], tf.int64)).numpy()
    assert abs(np.corrcoef(low, high)[0, 1]) < 0.05


def test_hashed_dropout_keeps_one_minus_rate_and_rescales():
    x = tf.ones([64, 64, 64])
    y = hashed_dropout(x, 0.1, SEED).numpy()
    kept = y != 0.0
    assert abs(kept.mean() - 0.9) < 0.004
    np.testing.assert_allclose(y[kept], 1.0 / 0.9, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.006  # inverted dropout keeps the expectation
    same = hashed_dropout(x, 0.1, SEED).numpy() != 0.0
    np.testing.assert_array_equal(kept, same)
    other = hashed_dropout(x, 0.1, SEED + 1).numpy() != 0.0
    assert abs(np.mean(kept == other) - (0.9**2 + 0.1**2)) < 0.01  # independent masks agree at 0.82
    np.testing.assert_array_equal(hashed_dropout(x, 0.0, SEED).numpy(), x.numpy())
    with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\)"):
        hashed_dropout(x, 1.0, SEED)
