"""Standalone loggers with the signatures of ``og_marl.loggers``.

``TerminalLogger`` prints ``key: value |`` lines at most every ``log_every`` seconds
(always when forced); ``WandbLogger`` does the same and sends to wandb (imported lazily);
``JsonWriter`` writes marl-eval JSON:
``{env: {task: {algo: {seed_N: {step_i: {step_count, metric: [v]}, absolute_metrics: {}}}}}}``,
keeping only ``evaluator/`` and ``absolute/`` keys, rewritten atomically after every write
(a damaged file found when it starts is reported and started afresh).
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional

from og_marl_omsd.files import read_json, write_json


class BaseLogger:
    def write(self, logs: Dict[str, Any], force: bool = False) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return


class TerminalLogger(BaseLogger):
    def __init__(self, log_every: float = 2):
        self._log_every = log_every
        self._last_log = time.time()

    def write(self, logs: Dict[str, Any], force: bool = False) -> None:
        if force or time.time() - self._last_log > self._log_every:
            print(" ".join(f"{key}: {float(value)} |" for key, value in logs.items()), flush=True)
            if not force:
                self._last_log = time.time()


class WandbLogger(TerminalLogger):
    def __init__(
        self,
        name: Optional[str] = None,
        config: Optional[Dict] = None,
        project: str = "default_project",
        notes: str = "",
        tags: Optional[List] = None,
        entity: Optional[str] = None,
        log_every: float = 2,
    ):
        super().__init__(log_every)
        import wandb  # optional dependency, imported only when asked for

        self._wandb = wandb
        wandb.init(name=name, project=project, notes=notes, tags=tags or ["default"], entity=entity,
                   config=config or {})

    def write(self, logs: Dict[str, Any], force: bool = False) -> None:
        if force or time.time() - self._last_log > self._log_every:
            self._wandb.log(dict(logs))
        super().write(logs, force)

    def close(self) -> None:
        self._wandb.finish()


class JsonWriter:
    def __init__(
        self,
        path: str,
        algorithm_name: str,
        task_name: str,
        environment_name: str,
        seed: int,
        file_name: str = "metrics.json",
        save_to_wandb: bool = False,
    ):
        self.path = path
        self.file_name = file_name
        self.run_data: Dict[str, Any] = {"absolute_metrics": {}}
        self._save_to_wandb = save_to_wandb
        file = os.path.join(path, file_name)
        os.makedirs(path, exist_ok=True)
        self.data, problem = read_json(file)
        if not isinstance(self.data, dict):
            if problem != "missing":
                print(f"[resume] {file} was damaged ({problem or 'not a JSON object'}); rebuilding it (a resumed run "
                      "writes its checkpointed evaluations back into it)", flush=True)
            self.data = {}
        algorithms = self.data.setdefault(environment_name, {}).setdefault(task_name, {})
        algorithms.setdefault(algorithm_name, {})[f"seed_{seed}"] = self.run_data
        self._dump()

    def write(self, timestep: int, key: str, value: float, evaluation_step: Optional[int] = None) -> None:
        prefix, _, metric = key.partition("/")
        if prefix == "evaluator":
            step = self.run_data.setdefault(f"step_{evaluation_step}", {})
            step.update({"step_count": timestep, metric: [value]})
        elif prefix == "absolute":
            self.run_data["absolute_metrics"][metric] = [value]
        self._dump()

    def _dump(self) -> None:
        write_json(os.path.join(self.path, self.file_name), self.data, indent=4)  # atomic: never left truncated

    def close(self) -> None:
        if self._save_to_wandb:
            import wandb

            wandb.save(os.path.join(self.path, self.file_name))
