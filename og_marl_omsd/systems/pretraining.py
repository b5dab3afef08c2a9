"""Pretraining stages (IQL critic, behaviour diffusion) and the cache that shares them.

A pretrained module is cached under ``<cache_dir>/<stage>-<key>/`` where ``key`` hashes the
dataset's content fingerprint and the stage's whole config (seed included), so a changed
dataset or config is never served a stale model, and OMSD, BRPO-FAC and BRPO-JAL (one joint
critic) or BRPO-Ind and BRPO-FAC (one set of independent behaviour models) share one copy.
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
        os.makedirs(partial)
        tf.train.Checkpoint(module=module).write(os.path.join(partial, "module"))
        with open(os.path.join(partial, "config.json"), "w") as handle:
            json.dump(config, handle, indent=2, sort_keys=True, default=str)
        with open(os.path.join(partial, "COMPLETE"), "w") as handle:
            handle.write(key)
        shutil.rmtree(path, ignore_errors=True)
        os.rename(partial, path)
        return path


def run_stage(
    name: str,
    steps: int,
    step_fn: Callable[[], Dict[str, tf.Tensor]],
    logger: Any,
    log_every: int = 1000,
) -> Dict[str, float]:
    """Run ``step_fn`` ``steps`` times, logging ``pretrain/<name>/...`` every ``log_every`` steps."""
    start, logs = time.time(), {}
    for step in range(1, steps + 1):
        logs = step_fn()
        if step % log_every == 0 or step == steps:
            elapsed = time.time() - start
            values = {f"pretrain/{name}/{k}": float(v) for k, v in logs.items()}
            for key, value in values.items():
                if not np.isfinite(value):
                    raise FloatingPointError(f"Non-finite {key} = {value} at {name} step {step}.")
            logger.write(
                values | {f"pretrain/{name}/step": step, f"pretrain/{name}/steps_per_second": step / max(elapsed, 1e-9)},
                force=True,
            )
    return {k: float(v) for k, v in logs.items()}
