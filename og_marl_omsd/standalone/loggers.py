"""Standalone loggers with the signatures of ``og_marl.loggers``.

``TerminalLogger`` prints ``key: value |`` lines at most every ``log_every`` seconds
(always when forced); ``WandbLogger`` sends to wandb (imported lazily), grouped, resumable and
with step metrics;
``JsonWriter`` writes marl-eval JSON:
``{env: {task: {algo: {seed_N: {step_i: {step_count, metric: [v]}, absolute_metrics: {}}}}}}``,
keeping only ``evaluator/`` and ``absolute/`` keys, rewritten atomically after every write
(a damaged file found when it starts is reported and started afresh).
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional, cast

from og_marl_omsd.support.files import read_json, write_json


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


class WandbLogger(BaseLogger):
    """Logs to wandb (imported lazily). OG-MARL's signature, plus what a study needs:

    ``group`` (the seeds of one configuration), ``run_id`` with ``resume="allow"`` (a
    resumed run continues the same wandb run), ``directory`` (wandb's files go there,
    e.g. the run directory) and step metrics: ``evaluation/*`` are plotted against
    ``evaluation/training_steps``, the actor stage's numbers against ``training_steps`` and
    each pretraining stage's against its ``pretrain/<stage>/step`` (not against the count
    of log calls). Like OG-MARL's, it prints nothing (the terminal has its own logger).
    """

    def __init__(
        self,
        name: Optional[str] = None,
        config: Optional[Dict] = None,
        project: str = "default_project",
        notes: str = "",
        tags: Optional[List] = None,
        entity: Optional[str] = None,
        log_every: float = 2,
        group: Optional[str] = None,
        run_id: Optional[str] = None,
        directory: Optional[str] = None,
        resume: Optional[str] = "allow",
    ):
        import wandb  # optional dependency, imported only when asked for

        self._wandb = wandb
        self._log_every = log_every
        self._last_log = 0.0
        self._defined: set = set()
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
        self.run = wandb.init(
            name=name,
            project=project,
            notes=notes,
            tags=tags or ["default"],
            entity=entity,
            config=config or {},
            group=group,
            id=run_id,
            dir=directory,
            resume=cast(Any, resume if run_id is not None else None),  # a str; wandb types it as a Literal of modes
        )
        self.run.define_metric("training_steps")
        self.run.define_metric("losses/*", step_metric="training_steps")
        self.run.define_metric("charts/*", step_metric="training_steps")
        self.run.define_metric("evaluation/training_steps")
        self.run.define_metric("evaluation/*", step_metric="evaluation/training_steps")

    def _define_stage(self, logs: Dict[str, Any]) -> None:
        for key in logs:
            if key.startswith("pretrain/") and key.endswith("/step"):
                stage = key[: -len("/step")]
                if stage not in self._defined:
                    self._defined.add(stage)
                    self.run.define_metric(key)
                    self.run.define_metric(f"{stage}/*", step_metric=key)

    def write(self, logs: Dict[str, Any], force: bool = False) -> None:
        if force or time.time() - self._last_log > self._log_every:
            self._define_stage(logs)
            self.run.log({key: float(value) for key, value in logs.items()})
            if not force:
                self._last_log = time.time()

    def close(self) -> None:
        self.run.finish()


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
                print(
                    f"[resume] {file} was damaged ({problem or 'not a JSON object'}); rebuilding it (a resumed run "
                    "writes its checkpointed evaluations back into it)",
                    flush=True,
                )
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
