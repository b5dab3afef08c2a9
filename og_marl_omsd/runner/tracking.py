"""What the runner adds around a run for the researcher: progress, loggers, wandb identity,
the exported policy and provenance. Kept out of :mod:`og_marl_omsd.runner.run` so the runner
calls it with a few lines.

wandb (``logger.wandb=true``):

- ``group``: the run's config without the seed (``<system>-<env>-<task>-<dataset>-<hash>``,
  the hash over every setting that shapes results except ``seed``), so the seeds of one
  configuration are one group;
- ``name``: ``<system>-<task>-<dataset>-seed<n>``;
- ``dir``: the run directory (wandb writes ``<run_dir>/wandb/``);
- ``id``: drawn once and kept in ``<run_dir>/wandb_run_id``, with ``resume="allow"``: a
  resumed run (after a crash or ``kill -9``) continues the same wandb run;
- evaluation metrics are plotted against ``evaluation/training_steps`` (see
  :class:`og_marl_omsd.standalone.loggers.WandbLogger`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from typing import Any, Dict, List, Optional, cast

from omegaconf import DictConfig, OmegaConf

from og_marl_omsd.support import progress
from og_marl_omsd.support.files import read_json, write_json, write_text
from og_marl_omsd.support.provenance import collect
from og_marl_omsd.upstream.og_marl_run import run_identity

WANDB_ID_FILE = "wandb_run_id"
WALL_TIME_FILE = "wall_time.json"


class WallClock:
    """A run's wall time over every process that worked on it (a killed run and its resumes).

    ``<run_dir>/wall_time.json`` holds ``{"processes": [{"started": <unix time>, "seconds": s}, ...]}``,
    one entry per process that opened the run directory. This process's entry is rewritten
    (atomically) by :meth:`record`, which :mod:`og_marl_omsd.support.progress` calls every few seconds
    during training, so a process killed with SIGKILL keeps its share up to its last record.
    """

    def __init__(self, run_dir: str, started: float):
        self.path = os.path.join(run_dir, WALL_TIME_FILE)
        self.started = float(started)
        data, _ = read_json(self.path)
        entries = data.get("processes") if isinstance(data, dict) else None
        self.earlier: List[Dict[str, float]] = [
            {"started": float(entry["started"]), "seconds": float(entry["seconds"])}
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict)
            and isinstance(entry.get("started"), (int, float))
            and isinstance(entry.get("seconds"), (int, float))
        ]

    def processes(self, now: Optional[float] = None) -> List[Dict[str, float]]:
        """Every process's ``{"started", "seconds"}``, this one last (its seconds until ``now``)."""
        now = time.time() if now is None else now
        return [*self.earlier, {"started": round(self.started, 3), "seconds": round(now - self.started, 3)}]

    def total(self, now: Optional[float] = None) -> float:
        return float(sum(entry["seconds"] for entry in self.processes(now)))

    def record(self) -> None:
        """Write this process's share so far (a failed write is skipped: the run goes on)."""
        try:
            write_json(self.path, {"processes": self.processes()})
        except OSError:
            pass


def wandb_run_id(run_dir: str) -> str:
    """The run directory's wandb id: read from ``wandb_run_id``, or drawn and stored there."""
    path = os.path.join(run_dir, WANDB_ID_FILE)
    if os.path.isfile(path):
        with open(path) as handle:
            stored = handle.read().strip()
        if stored:
            return stored
    run_id = uuid.uuid4().hex[:16]
    os.makedirs(run_dir, exist_ok=True)
    write_text(path, run_id + "\n")
    return run_id


def wandb_settings(cfg: DictConfig, run_dir: str, dataset: str) -> Dict[str, Any]:
    """Keyword arguments of the host's ``WandbLogger`` for this run (see the module docstring)."""
    resolved = cast(Dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    identity = run_identity(resolved, dataset)
    identity.pop("seed", None)
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return {
        "project": cfg.logger.wandb_project,
        "config": {**resolved, "dataset": dataset, "run_dir": run_dir},
        "name": f"{cfg.system.name}-{cfg.task.name}-{dataset}-seed{cfg.seed}",
        "group": f"{cfg.system.name}-{cfg.env.name}-{cfg.task.name}-{dataset}-{digest}",
        "tags": [cfg.system.name, cfg.env.name, cfg.task.name, dataset],
        "run_id": wandb_run_id(run_dir),
        "directory": os.path.abspath(run_dir),
        "resume": "allow",
        "log_every": cfg.logger.terminal_log_every,
    }


def make_loggers(cfg: DictConfig, run_dir: str, dataset: str) -> List[Any]:
    """Readable evaluation lines on the terminal (per-step numbers go to the progress lines),
    plus wandb when ``logger.wandb=true``."""
    from og_marl_omsd import host

    progress.configure(every=cfg.logger.get("progress_every", None))
    loggers: List[Any] = [progress.EvaluationPrinter(total_steps=int(cfg.training_steps))]
    if cfg.logger.wandb:
        loggers.append(host.WandbLogger(**wandb_settings(cfg, run_dir, dataset)))
    return loggers


def plan_stages(system: Any, training_steps: int) -> None:
    """Announce the run's stages to :mod:`og_marl_omsd.support.progress` (for the whole run's ETA), with
    each stage's cost per step (:func:`stage_step_costs`)."""
    stages = {}
    for stage, config in (
        ("critic", getattr(system, "critic_config", None)),
        ("behaviour", getattr(system, "behaviour_config", None)),
    ):
        if config is not None:
            stages[stage] = int(config.steps)
    stages["actors"] = int(training_steps)
    progress.plan_run(stages, costs=stage_step_costs(system))


def _mlp(sizes: List[int]) -> int:
    return sum(int(a) * int(b) for a, b in zip(sizes[:-1], sizes[1:]))


def stage_step_costs(system: Any) -> Dict[str, float]:
    """Multiply-adds per training step of each stage (per sample of the batch; the batch is the
    same in every stage), from the network shapes: a backward pass counts twice a forward one.
    The run's ETA times a stage not yet started from the current stage's measured speed scaled
    by these costs (a first stage's speed says little about a later stage's otherwise)."""
    agents = int(getattr(system, "num_agents", 1))
    state, action = int(getattr(system, "state_dim", 1)), int(getattr(system, "action_dim", 1))
    observation = int(getattr(system, "observation_dim", 1))
    costs: Dict[str, float] = {}
    critic_config = getattr(system, "critic_config", None)
    q_forward = 0
    if critic_config is not None:
        joint = critic_config.kind == "joint"
        heads = 1 if joint else agents
        hidden = list(critic_config.hidden_sizes)
        q_forward = heads * _mlp([state + (agents * action if joint else action), *hidden, 1])
        v_forward = heads * _mlp([state, *hidden, 1])
        costs["critic"] = 3.0 * (2 * q_forward + v_forward) + 2 * q_forward  # twin Q and V trained, targets read
    behaviour_config = getattr(system, "behaviour_config", None)
    score_forward = 0
    if behaviour_config is not None:
        width, inner = int(behaviour_config.width), int(behaviour_config.hidden)
        inputs = action + state + agents * action + 2 * width  # noisy action, state, prefix, time features
        score_forward = agents * (
            _mlp([inputs, width]) + int(behaviour_config.num_blocks) * 2 * width * inner + width * action
        )
        costs["behaviour"] = 3.0 * score_forward
    actor_config = getattr(system, "actor_config", None)
    actor_hidden = list(actor_config.hidden_sizes) if actor_config is not None else [256, 256]
    actor_forward = agents * _mlp([observation, *actor_hidden, action])
    costs["actors"] = 3.0 * actor_forward + 3.0 * 2 * q_forward + 2.0 * score_forward
    return costs


def finish_run(system: Any, environment: Any, run_dir: str, cfg: DictConfig, dataset: str) -> Dict[str, Any]:
    """After the last evaluation: export the actors to ``<run_dir>/policy`` and return what
    ``results.json`` gains (the final evaluation's episodes, the policy path, provenance)."""
    from og_marl_omsd.runner.policy import export_system, final_evaluation_record

    progress.plan_run(None)
    provenance = collect()
    extra: Dict[str, Any] = {
        "final_evaluation_episodes": final_evaluation_record(
            environment, 10 * int(cfg.num_eval_episodes), int(cfg.seed)
        ),
        "provenance": provenance,
    }
    if hasattr(system, "actors"):
        info = {
            "system": cfg.system.name,
            "env": cfg.env.name,
            "task": cfg.task.name,
            "dataset": dataset,
            "seed": int(cfg.seed),
            "provenance": provenance,
        }
        extra["policy"] = os.path.relpath(export_system(system, run_dir, info), run_dir)  # relative to the run dir
    return extra
