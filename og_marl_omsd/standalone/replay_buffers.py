"""Standalone ``FlashbaxReplayBuffer`` with the signature of ``og_marl.replay_buffers``.

A flashbax trajectory buffer; ``populate_from_vault`` reads a whole vault
(``<rel_dir>/<source>/<env>/<scenario>.vlt/<dataset>``) and ``sample`` returns a dict
with leading dims (B, T, ...). Sampled sequences may cross episode boundaries: mask.
"""

from __future__ import annotations

from typing import Any, Dict

import flashbax as fbx
import jax
import jax.numpy as jnp
import numpy as np
from flashbax.vault import Vault

Experience = Dict[str, Any]


class FlashbaxReplayBuffer:
    def __init__(
        self,
        sequence_length: int,
        max_size: int = 50_000,
        batch_size: int = 32,
        sample_period: int = 1,
        seed: int = 42,
        store_to_vault: bool = False,
        vault_name: str = "recorded_data",
    ):
        if store_to_vault:
            raise NotImplementedError(
                "store_to_vault is not supported by the standalone buffer; write vaults with og_marl_omsd.datasets."
            )
        self._sequence_length = sequence_length
        self._batch_size = batch_size
        self._sample_period = sample_period
        self._buffer = self._make_buffer(max_size, sample_period)
        self._buffer_state = None
        self._rng_key = jax.random.PRNGKey(seed)

    def _make_buffer(self, max_size: int, period: int) -> Any:
        buffer = fbx.make_trajectory_buffer(
            add_batch_size=1,
            sample_batch_size=self._batch_size,
            sample_sequence_length=self._sequence_length,
            period=period,
            min_length_time_axis=1,
            max_size=max_size,
        )
        self._sample_fn = jax.jit(buffer.sample)
        self._add_fn = jax.jit(buffer.add, donate_argnums=[0])
        return buffer

    def add(self, observations, actions, rewards, terminals, truncations, infos) -> None:
        stacked_infos = {
            key: np.stack(list(value.values()), 0) if isinstance(value, dict) else value for key, value in infos.items()
        }
        timestep = {
            "observations": np.stack(list(observations.values()), 0),
            "actions": np.stack(list(actions.values()), 0),
            "rewards": np.stack(list(rewards.values()), 0),
            "terminals": np.stack(list(terminals.values()), 0),
            "truncations": np.stack(list(truncations.values()), 0),
            "infos": stacked_infos,
        }
        if self._buffer_state is None:
            self._buffer_state = self._buffer.init(timestep)
        timestep = jax.tree.map(lambda x: jnp.asarray(x)[None, None], timestep)
        self._buffer_state = self._add_fn(self._buffer_state, timestep)

    def sample(self) -> Experience:
        self._rng_key, key = jax.random.split(self._rng_key)
        return self._sample_fn(self._buffer_state, key).experience

    def populate_from_vault(
        self,
        source: str,
        env_name: str,
        scenario_name: str,
        dataset_name: str,
        rel_dir: str = "vaults",
    ) -> bool:
        from og_marl_omsd.support.quiet import silent_stdout

        with silent_stdout():  # flashbax's "Loading vault found at ..."
            vault = Vault(
                vault_name=f"{source}/{env_name}/{scenario_name}.vlt", vault_uid=dataset_name, rel_dir=rel_dir
            )
        self._buffer_state = vault.read()
        # The buffer's shape comes from the vault; sampling uses the stored time axis.
        self._buffer = self._make_buffer(self._sequence_length, 1)
        return True
