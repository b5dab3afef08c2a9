"""The dataset's transitions on the training device, and batches drawn inside the compiled step.

The vault and the host's replay buffer stay the way data comes in: after
``populate_from_vault`` the buffer's storage (a flashbax trajectory-buffer state) is read
once, every transition the buffer could sample with ``sequence_length >= 2`` is built the
way :func:`og_marl_omsd.systems.actors.transition_batch` builds it from a sampled sequence,
and the result is kept as TF variables on the device (the GPU when TF sees one). A stage
then draws batch indices from its own ``tf.random.Generator`` inside its compiled step:
no JAX call, no host copy and no Python per step, and the generator's state is part of
the stage's checkpoint, so a resumed stage draws the same batches as an uninterrupted one.
:func:`repeat_steps` runs K such steps per compiled call; :func:`chunk_size` puts the call
boundaries on the steps where the host logs, checkpoints or evaluates.

The host sampler draws a row of the buffer and a start index uniformly; every row holds
the same number of valid starts, so that is the uniform distribution over all the
transitions built here (the batches differ from the host's, the distribution does not).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from og_marl_omsd.models.losses import team_reward
from og_marl_omsd.support.replay import ReplayAdapter


def training_device() -> str:
    """``/GPU:0`` when TF sees a GPU, else ``/CPU:0`` (the devices are set up by the entry point:
    :func:`og_marl_omsd.runner.devices.setup_devices`, never when this module is imported)."""
    return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"


def buffer_transitions(replay_buffer: Any) -> Dict[str, np.ndarray]:
    """Every transition ``(t, t+1)`` the host buffer can sample, as numpy arrays.

    Reads the buffer's flashbax state (:meth:`~og_marl_omsd.support.replay.ReplayAdapter.storage`:
    ``experience`` with leading ``(rows, time)`` axes, ``current_index``, ``is_full``). Returns
    ``observations (M, N, O)``, ``actions (M, N, A)`` clipped to [-1, 1], ``state``/``next_state
    (M, S)``, team ``reward (M,)`` (mean over agents, unscaled), ``done (M,)`` and ``mask (M,)``
    (0 where the episode was truncated: no successor in the data).
    """
    state = ReplayAdapter(replay_buffer).storage()
    experience = state.experience
    length = int(np.shape(experience["actions"])[1])
    full = bool(np.asarray(state.is_full))
    current = int(np.asarray(state.current_index))
    max_time = length if full else current
    head = current if full else 0
    starts = max_time - 1  # logical starts 0 .. max_time - 2 (sequences of two steps, no wrap past the end)
    if starts < 1:
        raise ValueError(f"The replay buffer holds {max_time} steps per row: too few for one transition.")
    physical = (head + np.arange(starts)) % length
    following = (physical + 1) % length

    def take(leaf, index):
        array = np.asarray(leaf)
        return array[:, index].reshape(-1, *array.shape[2:])  # rows x starts, row-major

    terminal = take(experience["terminals"], physical).astype(np.float32).max(axis=-1)
    truncation = take(experience["truncations"], physical).astype(np.float32).max(axis=-1)
    return {
        "observations": take(experience["observations"], physical).astype(np.float32),
        "actions": np.clip(take(experience["actions"], physical).astype(np.float32), -1.0, 1.0),
        "state": take(experience["infos"]["state"], physical).astype(np.float32),
        "next_state": take(experience["infos"]["state"], following).astype(np.float32),
        "reward": team_reward(take(experience["rewards"], physical).astype(np.float32)),
        "done": terminal,
        "mask": 1.0 - truncation * (1.0 - terminal),
    }


class DeviceDataset(tf.Module):
    """A dataset's transitions as device-resident (non-trainable) variables.

    Args:
        transitions: as :func:`buffer_transitions` returns.
        batch_size: transitions per batch.
    """

    def __init__(self, transitions: Dict[str, np.ndarray], batch_size: int, name: str = "device_dataset"):
        super().__init__(name=name)
        sizes = {key: len(value) for key, value in transitions.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"Transition arrays differ in length: {sizes}.")
        self.size = int(next(iter(sizes.values())))
        self.batch_size = int(batch_size)
        with tf.device(training_device()):
            self._data = {key: tf.Variable(value, trainable=False, name=key) for key, value in transitions.items()}

    @classmethod
    def of(cls, replay_buffer: Any) -> "DeviceDataset":
        """The dataset of ``replay_buffer``'s current contents (built once, then reused; kept
        beside the buffer by :meth:`~og_marl_omsd.support.replay.ReplayAdapter.memo`)."""

        def build(replay: ReplayAdapter) -> "DeviceDataset":
            return cls(buffer_transitions(replay.buffer), replay.batch_size)

        return ReplayAdapter(replay_buffer).memo("device_dataset", build)

    def zeros(self, key: str) -> tf.Tensor:
        """Zeros shaped like one batch of ``key`` (initial values of loop-carried batches)."""
        return tf.zeros([self.batch_size, *self._data[key].shape[1:]], self._data[key].dtype)

    def sample(self, rng: tf.random.Generator, reward_scale: float = 1.0) -> Dict[str, tf.Tensor]:
        """One batch drawn uniformly with replacement with ``rng`` (inside a compiled step).
        The keys of :func:`og_marl_omsd.systems.actors.transition_batch`."""
        index = rng.uniform([self.batch_size], 0, self.size, dtype=tf.int64)
        batch = {key: tf.gather(value, index) for key, value in self._data.items()}
        batch["reward"] = batch["reward"] * reward_scale
        return batch


# ---------------------------------------------------------------------- many steps per call
def repeat_steps(step_fn: Callable[[], Any], count: tf.Tensor, initial: Any) -> Any:
    """Run ``step_fn()`` ``count`` times in one ``tf.while_loop`` (inside a compiled function)
    and return the last call's outputs (``initial``, of the same structure, if ``count`` is 0).

    The loop body is compiled once, so any ``count`` runs the same program: K steps in one
    call give exactly the numbers of K calls of one step.
    """

    def body(i, _):
        return i + 1, step_fn()

    _, outputs = tf.while_loop(lambda i, _: i < count, body, (tf.constant(0, count.dtype), initial))
    return outputs


def chunk_size(done: int, total: int, limit: int, *periods: Optional[int]) -> int:
    """Steps for the next call: at most ``limit``, never past ``total`` or the next multiple of
    any period (logging, checkpoints, evaluation happen at call boundaries, on those steps)."""
    size = min(int(limit), int(total) - int(done))
    for period in periods:
        if period:
            size = min(size, int(period) - int(done) % int(period))
    return max(size, 1)
