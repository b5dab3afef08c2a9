"""The plugin's one view of the host's replay buffer.

A replay buffer is OG-MARL's ``FlashbaxReplayBuffer`` or the plugin's standalone one
(:mod:`og_marl_omsd.standalone.replay_buffers`, same signature and behaviour). Both keep their
data and sampler in private fields of the same names:

- ``_buffer_state``: the flashbax trajectory-buffer state (``experience`` with leading
  ``(rows, time)`` axes, ``current_index``, ``is_full``); ``None`` until data is added;
- ``_batch_size``: sequences per ``sample()``;
- ``_rng_key``: the JAX key split by every ``sample()``;
- the other scalar settings (``_sequence_length``, ``_sample_period``, OG-MARL's ``_max_size``).

:class:`ReplayAdapter` is the only code in the plugin that reads or writes them; everything
else (the device dataset, checkpoints, the pretrained cache's keys) goes through it::

    replay = ReplayAdapter(buffer)
    replay.storage()              # the flashbax state (ValueError when the buffer is empty)
    replay.batch_size             # int
    replay.rng_key                # the sampler's key as a list of ints, or None
    replay.rng_key = saved        # restore it (resume); replay.reseed(seed) starts it afresh
    replay.signature()            # the buffer's class and scalar settings (cache keys)
    replay.memo("name", build)    # build(replay) once per contents, kept beside the buffer

The adapter holds nothing but the buffer: make one wherever it is needed. What :meth:`memo`
keeps lives in a table keyed weakly by the buffer, never in an attribute of the buffer.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

_STATE = "_buffer_state"
_BATCH_SIZE = "_batch_size"
_RNG_KEY = "_rng_key"

# buffer -> {name: (storage the value was built from, value)}; an entry goes with its buffer.
_MEMOS: "weakref.WeakKeyDictionary[Any, Dict[str, Tuple[Any, Any]]]" = weakref.WeakKeyDictionary()


class ReplayAdapter:
    """A host replay buffer's data, batch size, sampler key and settings (see the module docstring).

    Args:
        buffer: an OG-MARL or standalone ``FlashbaxReplayBuffer``.
    """

    def __init__(self, buffer: Any):
        if buffer is None:
            raise ValueError("ReplayAdapter needs a replay buffer, got None.")
        self.buffer = buffer

    def storage(self) -> Any:
        """The buffer's flashbax trajectory-buffer state (``experience``, ``current_index``, ``is_full``).

        Raises:
            ValueError: if the buffer holds no data yet.
        """
        state = getattr(self.buffer, _STATE, None)
        if state is None:
            raise ValueError("The replay buffer holds no data: call populate_from_vault (or add) first.")
        return state

    @property
    def batch_size(self) -> int:
        """Sequences the buffer draws per ``sample()``."""
        try:
            return int(getattr(self.buffer, _BATCH_SIZE))
        except AttributeError:
            raise TypeError(
                f"{type(self.buffer).__qualname__} keeps no batch size: not a FlashbaxReplayBuffer."
            ) from None

    @property
    def rng_key(self) -> Optional[List[int]]:
        """The sampler's JAX key as a list of ints (``None`` for a buffer without one)."""
        key = getattr(self.buffer, _RNG_KEY, None)
        return None if key is None else np.asarray(key).astype(np.uint32).tolist()

    @rng_key.setter
    def rng_key(self, key: Sequence[int]) -> None:
        """Put back a key read from :attr:`rng_key` (a buffer without one is left alone)."""
        if hasattr(self.buffer, _RNG_KEY):
            import jax.numpy as jnp

            setattr(self.buffer, _RNG_KEY, jnp.asarray(np.asarray(key, np.uint32)))

    def reseed(self, seed: int) -> None:
        """Start the sampler's key stream from ``seed`` (a buffer without a key is left alone)."""
        if hasattr(self.buffer, _RNG_KEY):
            import jax

            setattr(self.buffer, _RNG_KEY, jax.random.PRNGKey(int(seed)))

    def signature(self) -> Dict[str, Any]:
        """The buffer's class (plugin's or OG-MARL's) and every scalar setting it holds (batch size,
        sequence length, sample period, ...; not the sampler's key), names without the leading
        underscore: read from the buffer itself, so that a new setting cannot be left out."""
        kind = type(self.buffer)
        settings = {
            name.lstrip("_"): value
            for name, value in sorted(getattr(self.buffer, "__dict__", {}).items())
            if isinstance(value, (bool, int, float, str)) and "rng" not in name
        }
        return {"class": f"{kind.__module__}.{kind.__qualname__}", **settings}

    def memo(self, name: str, build: Callable[["ReplayAdapter"], Any]) -> Any:
        """``build(self)``, made once for the buffer's current contents and then reused: built
        again when the buffer's storage is replaced (new data), dropped with the buffer."""
        state = getattr(self.buffer, _STATE, None)
        try:
            memos = _MEMOS.setdefault(self.buffer, {})
        except TypeError:  # a buffer that cannot be weakly referenced: nothing is kept
            return build(self)
        cached = memos.get(name)
        if cached is not None and cached[0] is state:
            return cached[1]
        value = build(self)
        memos[name] = (state, value)
        return value
