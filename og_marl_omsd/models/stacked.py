"""Per-agent (or per-head) layers stacked into one batched matmul.

``G`` independent linear layers with the same output width are kept as one weight
``(G, in, out)`` and one bias ``(G, out)``; inputs and outputs are group-major
``(G, B, features)``. Evaluating them is one batched matmul instead of ``G`` small ones,
which is what makes per-agent actors, per-agent diffusion nets and twin/per-agent critic
heads efficient (on a CPU and, more so, on a GPU). The maths of each group is exactly that
of its own ``snt.Linear``: group ``g`` reads only its own slice of the input and weight.

Groups whose real input is narrower than the stacked input (e.g. agent ``i`` of a
sequential score reads ``i`` prefix actions, zero-padded to ``N - 1``) say how many of the
last input columns are padding (``padding``): their weights are initialised like
``snt.Linear`` with their true fan-in (truncated normal, stddev ``1/sqrt(fan_in)``) and the
padded rows start at zero; the padded inputs are zero, so those rows never change the output.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf


class StackedLinear(snt.Module):
    """``y_g = x_g W_g + b_g`` for ``G`` groups at once: ``(G, B, in) -> (G, B, out)``.

    Args:
        groups: number of stacked layers ``G``.
        output_size: output width.
        padding: optional per-group count of trailing input columns that are zero padding
            for that group; default: none.
    """

    def __init__(
        self, groups: int, output_size: int, padding: Optional[Sequence[int]] = None, name: Optional[str] = None
    ):
        super().__init__(name=name)
        self.groups = int(groups)
        self.output_size = int(output_size)
        self._padding = [0] * self.groups if padding is None else [int(p) for p in padding]

    @snt.once
    def _initialise(self, inputs: tf.Tensor) -> None:
        input_size = int(inputs.shape[-1])
        fan_in = [input_size - p for p in self._padding]
        if len(fan_in) != self.groups or min(fan_in) < 0:
            raise ValueError(f"padding {self._padding} does not fit {self.groups} groups of {input_size} inputs.")
        rows = tf.range(input_size)[None, :, None]
        stddev = tf.constant([1.0 / np.sqrt(max(f, 1)) for f in fan_in], tf.float32)[:, None, None]
        real = tf.cast(rows < tf.constant(fan_in)[:, None, None], tf.float32)
        initial = tf.random.truncated_normal([self.groups, input_size, self.output_size]) * stddev * real
        self.w = tf.Variable(initial, name="w")
        self.b = tf.Variable(tf.zeros([self.groups, self.output_size]), name="b")

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        self._initialise(inputs)
        return tf.linalg.matmul(inputs, self.w) + self.b[:, None, :]


class StackedMLP(snt.Module):
    """``G`` MLPs of the same sizes as one stack of :class:`StackedLinear` (activation between
    layers, none after the last), like ``snt.nets.MLP`` per group."""

    def __init__(
        self,
        groups: int,
        output_sizes: Sequence[int],
        activation: Callable = tf.nn.relu,
        padding: Optional[Sequence[int]] = None,
        name: Optional[str] = None,
    ):
        super().__init__(name=name)
        self._layers = [
            StackedLinear(groups, size, padding=padding if k == 0 else None, name=f"linear_{k}")
            for k, size in enumerate(output_sizes)
        ]
        self._activation = activation

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        h = inputs
        for k, layer in enumerate(self._layers):
            h = layer(h)
            if k < len(self._layers) - 1:
                h = self._activation(h)
        return h


class StackedLayerNorm(snt.Module):
    """LayerNorm over the last axis with a per-group scale and offset ``(G, F)``
    (``snt.LayerNorm(-1, True, True)`` per group: eps 1e-5, scale 1, offset 0 at start)."""

    def __init__(self, groups: int, eps: float = 1e-5, name: Optional[str] = None):
        super().__init__(name=name)
        self.groups = int(groups)
        self.eps = float(eps)

    @snt.once
    def _initialise(self, inputs: tf.Tensor) -> None:
        size = int(inputs.shape[-1])
        self.scale = tf.Variable(tf.ones([self.groups, size]), name="scale")
        self.offset = tf.Variable(tf.zeros([self.groups, size]), name="offset")

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        self._initialise(inputs)
        mean, variance = tf.nn.moments(inputs, axes=[-1], keepdims=True)
        normalised = (inputs - mean) * tf.math.rsqrt(variance + self.eps)
        return normalised * self.scale[:, None, :] + self.offset[:, None, :]
