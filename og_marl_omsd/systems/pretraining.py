"""Pretraining stages (IQL critic, behaviour diffusion) and the cache that shares them.

A pretrained module is cached under ``<cache_dir>/<stage>-<key>/`` where ``key`` hashes the
dataset's content fingerprint, the stage's whole config (seed included), what the stage
learns from besides it (the replay buffer's settings and implementation, the host mode,
compilation) and a key-format version (:func:`stage_key`), so a changed dataset or setting
is never served a stale model, and OMSD, BRPO-FAC and BRPO-JAL (one joint
critic) or BRPO-Ind and BRPO-FAC (one set of independent behaviour models) share one copy.
The key is printed whenever a stage is trained or loaded. Training a stage is resumable
(:func:`run_stage` with a :class:`~og_marl_omsd.support.checkpoints.StageCheckpoint`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from og_marl_omsd.runner.device_data import chunk_size
from og_marl_omsd.support import progress
from og_marl_omsd.support.checkpoints import FiniteGuard, StageCheckpoint
from og_marl_omsd.support.errors import NonFiniteLossError
from og_marl_omsd.support.replay import ReplayAdapter

# Bumped whenever what a key covers changes, so entries made under an older rule are never served.
KEY_VERSION = 3  # 3: behaviour models' dropout masks from fast_random (not Philox)


def replay_signature(replay_buffer: Any) -> Dict[str, Any]:
    """What the replay buffer contributes to a stage: its class (plugin buffer or OG-MARL's)
    and every scalar setting it holds (:meth:`og_marl_omsd.support.replay.ReplayAdapter.signature`)."""
    return {} if replay_buffer is None else ReplayAdapter(replay_buffer).signature()


def stage_key(stage_config: Any, dataset_fingerprint: str, context: Optional[Dict[str, Any]] = None) -> str:
    """The cache key of a pretraining stage: a hash of everything that changes what it learns.

    ``stage_config`` is the very config the stage builds and trains from (networks, steps,
    rates, reward scale, seed, ...: a :mod:`~og_marl_omsd.systems.stage_configs` config or its
    ``cache_dict()``); ``context`` adds what comes from outside it (the host
    mode, the replay buffer's :func:`replay_signature`, compilation); :data:`KEY_VERSION`
    retires keys made under an older rule.
    """
    from og_marl_omsd import host

    if hasattr(stage_config, "cache_dict"):
        stage_config = stage_config.cache_dict()
    payload = {
        "key_version": KEY_VERSION,
        "config": stage_config,
        "dataset": dataset_fingerprint,
        "host": host.HOST,
        "context": context or {},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


DATASET_FILE = "DATASET"  # in a cache entry: the fingerprint of the data it was trained on


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


class PretrainedCache:
    """Directory of pretrained modules saved with ``tf.train.Checkpoint``.

    Entries are written under a temporary name and renamed into place when complete; one
    process at a time trains an entry (:meth:`lock`, the others wait and then load it); a
    damaged entry is reported, discarded and counts as a miss; a cache that cannot be
    written (read-only, full) still serves what it holds.
    """

    def __init__(self, root: str, read_only: bool = False):
        self.root = root
        self.read_only = read_only

    def path(self, stage: str, key: str) -> str:
        return os.path.join(self.root, f"{stage}-{key}")

    def lock(self, stage: str, key: str) -> Any:
        """Hold ``<cache>/.locks/<stage>-<key>.lock`` while checking, training and saving the entry."""
        import contextlib

        from og_marl_omsd.support.files import file_lock

        if self.read_only:
            return contextlib.nullcontext()

        def waiting(holder: str) -> None:
            print(
                f"[pretrain] {stage}: another process (pid {holder}) is training this stage for the cache "
                f"{self.path(stage, key)}; waiting for it, then loading its result",
                flush=True,
            )

        return file_lock(os.path.join(self.root, ".locks", f"{stage}-{key}.lock"), waiting=waiting)

    def load(self, stage: str, key: str, module: tf.Module, dataset_fingerprint: Optional[str] = None) -> bool:
        """Restore the entry into ``module``; ``False`` when it is missing or damaged (then removed).
        An entry whose ``DATASET`` names another dataset fingerprint than ``dataset_fingerprint``
        (its key hashes the fingerprint, so only a damaged or hand-made entry can) is damaged."""
        from og_marl_omsd.support.files import discard

        path = self.path(stage, key)
        if not os.path.isdir(path):
            return False
        problem = None
        try:
            with open(os.path.join(path, "COMPLETE")) as handle:
                if handle.read().strip() != key:
                    problem = "its COMPLETE marker does not name this key"
            if problem is None and dataset_fingerprint is not None:
                made_from = _read_text(os.path.join(path, DATASET_FILE))
                if made_from is not None and made_from != dataset_fingerprint:
                    problem = f"it was trained on data with fingerprint {made_from}, not {dataset_fingerprint}"
            if problem is None:  # read every tensor before touching the module
                reader = tf.train.load_checkpoint(os.path.join(path, "module"))
                for name in reader.get_variable_to_shape_map():
                    reader.get_tensor(name)
        except (OSError, ValueError, IndexError, RuntimeError, tf.errors.OpError) as error:  # truncated: IndexError
            problem = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if problem is not None:
            print(
                f"[pretrain] {stage}: the cache entry {path} is damaged or incomplete ({problem}); treating it as "
                "a miss: training the stage and replacing the entry",
                flush=True,
            )
            if not self.read_only:
                try:
                    discard(path)
                except OSError:
                    pass
            return False
        tf.train.Checkpoint(module=module).read(os.path.join(path, "module")).assert_consumed()
        return True

    def save(
        self,
        stage: str,
        key: str,
        module: tf.Module,
        config: Dict[str, Any],
        dataset_fingerprint: Optional[str] = None,
    ) -> Optional[str]:
        """Publish ``module`` as the entry (with ``DATASET``: the fingerprint of the data it was
        trained on); returns its path, or ``None`` (with a message) when the cache cannot be
        written: the run goes on with the module it trained."""
        from og_marl_omsd.support.files import (
            is_disk_error,
            partial_dir,
            publish_dir,
            remove_leftovers,
            write_json,
            write_text,
        )

        path = self.path(stage, key)
        if self.read_only:
            return None
        partial = None
        try:
            os.makedirs(self.root, exist_ok=True)
            remove_leftovers(self.root)
            partial = partial_dir(path)
            tf.train.Checkpoint(module=module).write(os.path.join(partial, "module"))
            write_json(os.path.join(partial, "config.json"), config)
            if dataset_fingerprint is not None:
                write_text(os.path.join(partial, DATASET_FILE), dataset_fingerprint)
            write_text(os.path.join(partial, "COMPLETE"), key)
            complete = os.path.isfile(os.path.join(path, "COMPLETE"))
            publish_dir(partial, path, replace=not complete)  # a complete copy has the same content
        except BaseException as error:
            if partial is not None:
                shutil.rmtree(partial, ignore_errors=True)
            if isinstance(error, (OSError, tf.errors.OpError)) and (
                is_disk_error(error) or isinstance(error, tf.errors.OpError)
            ):
                print(
                    f"[pretrain] {stage}: could not write the cache entry {path} "
                    f"({getattr(error, 'strerror', None) or error}); continuing without caching it",
                    flush=True,
                )
                return None
            raise
        return path


def run_stage(
    name: str,
    steps: int,
    step_fn: Callable[[int], Dict[str, tf.Tensor]],
    logger: Any,
    log_every: int = 1000,
    checkpoint: Optional[StageCheckpoint] = None,
    guard: Optional[FiniteGuard] = None,
    steps_per_call: int = 1,
) -> Dict[str, float]:
    """Run ``step_fn(k)`` (``k`` steps in one compiled call) until ``steps`` steps are done,
    logging ``pretrain/<name>/...`` every ``log_every`` steps.

    Calls run at most ``steps_per_call`` steps and end on every logging and checkpoint step.
    With a ``checkpoint`` the stage first resumes from its newest checkpoint and saves one
    every ``checkpoint.every`` steps; ``guard`` (updated inside ``step_fn``) stops it at a
    non-finite loss before anything is saved.
    """
    done = checkpoint.restore(steps) if checkpoint is not None else 0
    first = done + 1
    start, logs = time.time(), {}
    bar = progress.Progress(name, steps, start=done)
    while done < steps:
        count = chunk_size(done, steps, steps_per_call, log_every, checkpoint.every if checkpoint is not None else None)
        logs = step_fn(count)
        done += count
        step = done
        bar.update(step, logs)
        if checkpoint is not None:
            checkpoint.maybe_save(step, steps)
        if step % log_every == 0 or step == steps:
            elapsed = time.time() - start
            if guard is not None:
                guard.check(name, checkpoint, logs)
            values = {f"pretrain/{name}/{k}": float(v) for k, v in logs.items()}
            for key, value in values.items():
                if not np.isfinite(value):
                    raise NonFiniteLossError(f"Stage {name} stopped: non-finite {key} = {value} at step {step}.")
            logger.write(
                values
                | {
                    f"pretrain/{name}/step": step,
                    f"pretrain/{name}/steps_per_second": (step - first + 1) / max(elapsed, 1e-9),
                },
                force=True,
            )
    bar.close()
    if guard is not None:
        guard.check(name, checkpoint)
    return {k: float(v) for k, v in logs.items()}
