"""models/stacked.py: per-agent layers stacked into one."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

from og_marl_omsd.models.stacked import StackedLinear, StackedMLP


@pytest.mark.slow
def test_stacked_layers_compute_each_groups_own_linear_map():
    tf.random.set_seed(0)
    layer = StackedLinear(3, 4, padding=[2, 0, 1])
    x = tf.random.normal([3, 5, 6])
    y = layer(x).numpy()
    for g in range(3):
        np.testing.assert_allclose(y[g], x[g].numpy() @ layer.w[g].numpy() + layer.b[g].numpy(), rtol=1e-5, atol=1e-6)
    w = layer.w.numpy()
    assert np.all(w[0, 4:] == 0) and np.all(w[2, 5:] == 0) and np.all(w[1, 5] != 0)  # padded rows start at zero
    mlp = StackedMLP(2, [7, 3])
    out = mlp(tf.random.normal([2, 4, 5]))
    assert out.shape == (2, 4, 3) and len(mlp.trainable_variables) == 4
    assert isinstance(mlp, snt.Module)
