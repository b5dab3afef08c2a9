"""Reading and safely writing datasets as flashbax vaults in OG-MARL's layout.

Layout: ``<rel_dir>/<source>/<env>/<scenario>.vlt/<uid>/``; arrays are stored ``(1, T, ...)``
with the OG-MARL experience keys ``observations (T,N,O)``, ``actions (T,N,A)``,
``rewards (T,N)``, ``terminals (T,N)``, ``truncations (T,N)`` and ``infos.state (T,S)``.

Writes are safe: a dataset is written under a temporary uid and renamed when complete, so
an interrupted or failed write never leaves a dataset that is later read; an existing
dataset is never appended to (flashbax appends silently to an existing uid).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from og_marl_omsd.support.files import publish_dir
from og_marl_omsd.support.quiet import silent_stdout

PARTIAL_PREFIX = ".partial-"
EXPERIENCE_KEYS = ("observations", "actions", "rewards", "terminals", "truncations")


@dataclass(frozen=True)
class VaultLocation:
    """Where one scenario's datasets live: ``<rel_dir>/<source>/<env>/<scenario>.vlt``."""

    source: str
    env: str
    scenario: str
    rel_dir: str = "vaults"

    @property
    def vault_name(self) -> str:
        return f"{self.source}/{self.env}/{self.scenario}.vlt"

    @property
    def path(self) -> str:
        return os.path.join(self.rel_dir, self.vault_name)

    def dataset_path(self, uid: str) -> str:
        """The folder of dataset ``uid``: a plain name, never a path (``/``, ``.`` and ``..`` are refused)."""
        if not uid or uid in (".", "..") or any(sep in uid for sep in {"/", os.sep, os.altsep or "/"}):
            raise ValueError(f"{uid!r} is not a dataset name (a folder name in {self.path}); no path is built from it")
        return os.path.join(self.path, uid)

    def available(self) -> List[str]:
        """Complete datasets (partial writes excluded), sorted."""
        if not os.path.isdir(self.path):
            return []
        return sorted(
            name
            for name in os.listdir(self.path)
            if not name.startswith(".") and os.path.isfile(os.path.join(self.path, name, "metadata.json"))
        )

    def exists(self, uid: str) -> bool:
        return uid in self.available()


def write_dataset(
    location: VaultLocation,
    uid: str,
    experience: Mapping[str, Any],
    metadata: Optional[Dict[str, Any]] = None,
) -> str:
    """Write ``experience`` (a tree of arrays with a leading time axis T) as dataset ``uid``.

    The data goes to a temporary uid first and is renamed to ``uid`` only when the
    write completed; on any failure (a full disk included) the temporary directory, and
    any directory this call created that is left empty, is removed and the error re-raised.

    Returns:
        The dataset's directory.

    Raises:
        FileExistsError: if ``uid`` already exists (flashbax would append to it).
    """
    import jax.numpy as jnp
    from flashbax.buffers.trajectory_buffer import TrajectoryBufferState
    from flashbax.vault import Vault

    from og_marl_omsd.support.provenance import collect

    metadata = {**(metadata or {}), "provenance": collect()}  # code and library versions that wrote it
    final_path = location.dataset_path(uid)
    if os.path.exists(final_path):
        raise FileExistsError(
            f"Dataset {final_path} already exists; flashbax would append to it. Delete it first or choose another uid."
        )
    partial_uid = f"{PARTIAL_PREFIX}{uid}-{os.getpid()}"
    partial_path = location.dataset_path(partial_uid)
    shutil.rmtree(partial_path, ignore_errors=True)
    created = missing_directories(location.path)
    tree = _map_tree(lambda x: jnp.asarray(np.asarray(x))[None], experience)  # (1, T, ...)
    length = int(np.asarray(experience["actions"]).shape[0])
    state = TrajectoryBufferState(experience=tree, current_index=jnp.asarray(length), is_full=jnp.asarray(False))
    try:
        with silent_stdout():  # flashbax prints the temporary name ("New vault created at .../.partial-...")
            vault = Vault(
                vault_name=location.vault_name,
                experience_structure=tree,
                rel_dir=os.path.abspath(location.rel_dir),
                vault_uid=partial_uid,
                metadata=metadata,
            )
        written = vault.write(state, source_interval=(0, length))
        if written != length:
            raise IOError(f"flashbax wrote {written} of {length} timesteps to {partial_path}")
        if not publish_dir(partial_path, final_path, replace=False):
            raise FileExistsError(f"Dataset {final_path} appeared while this process wrote it; it is kept.")
    except BaseException:
        shutil.rmtree(partial_path, ignore_errors=True)
        for directory in created:  # deepest first; only those left empty
            try:
                os.rmdir(directory)
            except OSError:
                break
        raise
    return final_path


def remove_stale_partials(location: VaultLocation) -> List[str]:
    """Delete the temporary directories of writes whose process is gone (a killed write
    leaves ``.partial-<uid>-<pid>``); they are never read, this only frees the disk.

    Returns:
        The removed directories.
    """
    removed: List[str] = []
    if not os.path.isdir(location.path):
        return removed
    for name in os.listdir(location.path):
        if not name.startswith(PARTIAL_PREFIX):
            continue
        pid_text = name.rsplit("-", 1)[-1]
        if pid_text.isdigit() and _process_alive(int(pid_text)):
            continue
        shutil.rmtree(location.dataset_path(name), ignore_errors=True)
        removed.append(location.dataset_path(name))
    return removed


def _process_alive(pid: int) -> bool:
    from og_marl_omsd.support.files import process_alive

    return process_alive(pid)


def missing_directories(path: str) -> List[str]:
    """``path`` and those of its ancestors that do not exist yet, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def read_dataset(location: VaultLocation, uid: str) -> Dict[str, Any]:
    """Read a whole dataset into numpy arrays with the time axis first (batch axis dropped)."""
    from flashbax.vault import Vault

    if not location.exists(uid):
        raise FileNotFoundError(f"No dataset {uid!r} in {location.path}")
    with silent_stdout():  # "Loading vault found at ..."
        vault = Vault(vault_name=location.vault_name, vault_uid=uid, rel_dir=os.path.abspath(location.rel_dir))
    state = vault.read()
    return _map_tree(lambda x: np.asarray(x)[0], state.experience)


def fingerprint(experience: Mapping[str, Any]) -> str:
    """A sha256 of every array's dtype, shape and bytes, in key order (the dataset's content key)."""
    digest = hashlib.sha256()
    for key, value in _leaves(experience):
        array = np.ascontiguousarray(value)
        digest.update(f"{key}|{array.dtype.str}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> List[tuple]:
    items = []
    for key in sorted(tree):
        value = tree[key]
        if isinstance(value, Mapping):
            items.extend(_leaves(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _map_tree(fn: Any, tree: Mapping[str, Any]) -> Dict[str, Any]:
    return {key: _map_tree(fn, value) if isinstance(value, Mapping) else fn(value) for key, value in tree.items()}


def episode_returns(experience: Mapping[str, Any]) -> np.ndarray:
    """Team-reward return of every complete episode (an episode ends at a terminal or truncation).

    The team reward is the mean over agents; steps after the last episode end are ignored.
    """
    from og_marl_omsd.models.losses import team_reward  # TensorFlow only when asked for (imports stay cheap)

    rewards = team_reward(np.asarray(experience["rewards"], np.float64))  # (T,)
    ends = np.maximum(np.asarray(experience["terminals"]), np.asarray(experience["truncations"])).max(axis=-1) > 0
    end_index = np.flatnonzero(ends)
    if end_index.size == 0:
        return np.zeros(0)
    cumulative = np.cumsum(rewards)[end_index]
    return np.diff(np.concatenate([[0.0], cumulative]))
