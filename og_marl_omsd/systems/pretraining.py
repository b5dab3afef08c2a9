"""Pretraining stages (IQL critic, behaviour diffusion) and the cache that shares them.

A pretrained module is cached under ``<cache_dir>/<stage>-<key>/`` where ``key`` hashes the
dataset's content fingerprint and the stage's whole config (seed included), so a changed
dataset or config is never served a stale model, and OMSD, BRPO-FAC and BRPO-JAL (one joint
critic) or BRPO-Ind and BRPO-FAC (one set of independent behaviour models) share one copy.
The key is printed whenever a stage is trained or loaded. Training a stage is resumable
(:func:`run_stage` with a :class:`~og_marl_omsd.checkpoints.StageCheckpoint`).
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

from og_marl_omsd.checkpoints import FiniteGuard, StageCheckpoint
from og_marl_omsd.device_data import chunk_size
from og_marl_omsd.errors import NonFiniteLossError


def stage_key(stage_config: Dict[str, Any], dataset_fingerprint: str) -> str:
    payload = json.dumps({"config": stage_config, "dataset": dataset_fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class PretrainedCache:
    """Directory of pretrained modules saved with ``tf.train.Checkpoint`` (written atomically)."""

    def __init__(self, root: str):
        self.root = root

    def path(self, stage: str, key: str) -> str:
        return os.path.join(self.root, f"{stage}-{key}")

    def load(self, stage: str, key: str, module: tf.Module) -> bool:
        path = self.path(stage, key)
        index = os.path.join(path, "COMPLETE")
        if not os.path.isfile(index):
            return False
        tf.train.Checkpoint(module=module).read(os.path.join(path, "module")).assert_consumed()
        return True

    def save(self, stage: str, key: str, module: tf.Module, config: Dict[str, Any]) -> str:
        path = self.path(stage, key)
        partial = f"{path}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            os.makedirs(partial)
            tf.train.Checkpoint(module=module).write(os.path.join(partial, "module"))
            with open(os.path.join(partial, "config.json"), "w") as handle:
                json.dump(config, handle, indent=2, sort_keys=True, default=str)
            with open(os.path.join(partial, "COMPLETE"), "w") as handle:
                handle.write(key)
            if os.path.isfile(os.path.join(path, "COMPLETE")):
                shutil.rmtree(partial)  # another process cached the same key meanwhile: same content
                return path
            shutil.rmtree(path, ignore_errors=True)  # an incomplete leftover
            os.rename(partial, path)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            if os.path.isfile(os.path.join(path, "COMPLETE")):
                return path  # lost a rename race to a complete copy
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
    while done < steps:
        count = chunk_size(done, steps, steps_per_call, log_every, checkpoint.every if checkpoint is not None else None)
        logs = step_fn(count)
        done += count
        step = done
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
                values | {f"pretrain/{name}/step": step,
                          f"pretrain/{name}/steps_per_second": (step - first + 1) / max(elapsed, 1e-9)},
                force=True,
            )
    if guard is not None:
        guard.check(name, checkpoint)
    return {k: float(v) for k, v in logs.items()}
