"""The steps of one run, as a library: :func:`og_marl_omsd.runner.run.run`, ``baselines/bandit.py``,
the comparison harness and the tests call these rather than wiring a run themselves.

One run (:func:`og_marl_omsd.runner.run.run`)::

    plan = prepare_run(cfg)                       # settings, run directory: new, resumed or complete
    location = prepare_dataset(cfg, plan.dataset)  # (plan.py) the vault; generated when missing
    if plan.completed: return report_completed(plan, location)  # only if made from this very dataset
    environment = make_environment(cfg)           # the task's environment (devices set up first)
    data = load_dataset(cfg, location, plan.dataset, environment, plan.params)  # checked; reward scale
    lock = open_run_dir(cfg, plan, data)          # lock, same dataset as before, leftovers, config.yaml
    clock = track_wall_time(plan.run_dir, start)  # this process's share of the run's wall time
    logger = make_run_logger(cfg, plan, environment)
    system, buffer = build_system_and_buffer(cfg, plan.system_class, plan.params, environment, logger, data)
    enable_checkpoints(system, cfg, plan.run_dir, logger, data.fingerprint)
    cache_keys = pretrain(system, buffer, cfg, data, plan.cache_read_only)
    train_and_evaluate(system, buffer, cfg)
    results = finish_run(cfg, plan, data, system, environment, logger, cache_keys, start, pretrain_seconds, clock)
    # then run.py writes results.json, releases the lock and prints the summary line

``baselines/bandit.py`` runs the same steps up to :func:`pretrain`, then sweeps the actor
stage in memory (no run directory, no checkpoints).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np
from omegaconf import DictConfig, OmegaConf

from og_marl_omsd.datasets import record as data_record
from og_marl_omsd.datasets.vaults import VaultLocation, episode_returns, fingerprint
from og_marl_omsd.runner import tracking
from og_marl_omsd.runner.devices import setup_devices
from og_marl_omsd.runner.plan import _lock_run_dir, check_same_run, plan_run, reward_scale
from og_marl_omsd.runner.validation import check_writable_directory, read_checked_dataset, validate_experience
from og_marl_omsd.support import progress, provenance
from og_marl_omsd.support.errors import UserError
from og_marl_omsd.support.files import read_json, remove_leftovers, write_text
from og_marl_omsd.upstream.og_marl_run import EpisodeReturns, marl_eval_names, print_summary, run_results


@dataclasses.dataclass
class RunPlan:
    """What :func:`prepare_run` decided: the system, its parameters, the dataset and the run
    directory; ``completed``: the results of a run that already finished (nothing to do)."""

    system_class: type
    params: Dict[str, Any]
    dataset: str
    run_dir: str
    cache_read_only: bool = False
    completed: Optional[Dict[str, Any]] = None

    @property
    def results_path(self) -> str:
        return os.path.join(self.run_dir, "results.json")

    @property
    def pretrains(self) -> bool:
        """Whether the system has this plugin's pretraining stages (else OG-MARL's own runner runs it)."""
        return hasattr(self.system_class, "pretrain")


@dataclasses.dataclass
class CheckedDataset:
    """A dataset that passed the checks, with what the run needs from it."""

    location: Any  # its VaultLocation
    uid: str
    timesteps: int
    actions_outside: int  # action values outside [-1, 1] (clipped for training when allowed)
    returns: np.ndarray  # episode returns (team reward)
    fingerprint: str
    reward_scale: float

    def statistics(self) -> Dict[str, Any]:
        return {
            "episodes": int(self.returns.size),
            "mean_return": float(self.returns.mean()),
            "std_return": float(self.returns.std()),
            "fingerprint": self.fingerprint,
        }


def prepare_run(cfg: DictConfig) -> RunPlan:
    """Check the settings, find the run directory, and decide: a new run, a resumed one, or one
    already complete (``plan.completed``). Directories that must be written are checked now."""
    provenance.pin()  # results name the commit this process runs, even if the checkout moves on
    system_class, params, dataset, run_dir = plan_run(cfg)
    plan = RunPlan(system_class, params, dataset, run_dir)
    if not plan.pretrains:
        return plan
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):  # a file: say so, not "results damaged"
        check_writable_directory(run_dir, "run directory", "run_dir")
    check_same_run(cfg, dataset, run_dir)
    results, problem = read_json(plan.results_path)
    if problem is None and isinstance(results, dict) and "final_evaluation" in results:
        plan.completed = results  # reported by report_completed once its dataset is checked
        return plan
    if problem != "missing":
        print(
            f"[resume] {plan.results_path} is damaged ({problem or 'incomplete'}); the run resumes from its "
            "checkpoints to write it again",
            flush=True,
        )
    check_writable_directory(run_dir, "run directory", "run_dir")
    try:
        check_writable_directory(cfg.pretrained_dir, "pretrained cache directory", "pretrained_dir")
    except UserError:  # an existing read-only (shared) cache still serves the stages it holds
        if not os.path.isdir(cfg.pretrained_dir):
            raise
        print(
            f"[run] the pretrained cache {cfg.pretrained_dir} is not writable: it is used read-only (stages it holds "
            "are loaded; a stage it lacks is trained for this run and not cached)",
            flush=True,
        )
        plan.cache_read_only = True
    return plan


def check_run_data(run_dir: str, location: Any, dataset: str, fingerprint: Optional[str] = None) -> Dict[str, Any]:
    """The dataset record of ``run_dir`` (:mod:`og_marl_omsd.datasets.record`) checked against
    dataset ``dataset`` at ``location`` now, and written (or its file signature refreshed);
    returns it. ``fingerprint``: the dataset's content fingerprint when the caller read it
    (else it is taken from the record while the files are unchanged, or computed).

    Raises:
        UserError: the run directory was made from data with another fingerprint.
    """
    recorded = data_record.read_record(run_dir)
    finished = os.path.isfile(os.path.join(run_dir, "results.json"))
    if fingerprint is None:
        fingerprint, _ = data_record.current_fingerprint(location, dataset, recorded)
    if recorded is not None and recorded["fingerprint"] != fingerprint:
        raise data_record.changed_dataset_error(
            run_dir, location.dataset_path(dataset), recorded["fingerprint"], fingerprint, finished
        )
    current = data_record.make_record(location, dataset, fingerprint)
    if recorded is None and _has_checkpoints(run_dir):
        print(
            f"[resume] {run_dir} records no dataset fingerprint (started before runs recorded one): its checkpoints "
            f"are taken as made from {location.dataset_path(dataset)} as it is now (fingerprint {fingerprint})",
            flush=True,
        )
    if recorded != current and not (recorded is None and finished):  # a legacy result is not certified after the fact
        try:
            data_record.write_record(run_dir, current)
        except OSError:  # a read-only finished run: the record is refreshed by a later run
            pass
    return current


def check_offline_run_data(run_dir: str, place: Tuple[str, str, str, str], dataset: str, finished: bool) -> None:
    """For OG-MARL's own systems (:func:`og_marl_omsd.upstream.og_marl_run.run_offline_system`): a
    finished run is reported only when made from the dataset now on disk (:func:`check_run_data`);
    an unfinished one resumes nothing (it starts again), so it records the dataset it trains on."""
    location = VaultLocation(*place)
    if finished:
        check_run_data(run_dir, location, dataset)
        return
    fingerprint, _ = data_record.current_fingerprint(location, dataset)
    data_record.write_record(run_dir, data_record.make_record(location, dataset, fingerprint))


def _has_checkpoints(run_dir: str) -> bool:
    try:
        return bool(os.listdir(os.path.join(run_dir, "checkpoints")))
    except OSError:
        return False


def report_completed(plan: RunPlan, location: Any) -> Dict[str, Any]:
    """A finished run's results, printed, once its dataset is the one it was made from
    (:func:`check_run_data`: never the result of data that is no longer there)."""
    assert plan.completed is not None
    check_run_data(plan.run_dir, location, plan.dataset)
    print(f"Run already complete: {plan.run_dir}", flush=True)
    print_summary(plan.completed)
    return plan.completed


def make_environment(cfg: DictConfig) -> Any:
    """The task's environment (seeded with the run's seed), after the devices are set up."""
    setup_devices()
    from og_marl_omsd import host

    # Every evaluation episode's return is recorded (marl-eval JSON keeps the spread, not only the mean).
    return EpisodeReturns(host.get_environment(cfg.task.source, cfg.task.env_name, cfg.task.scenario, seed=cfg.seed))


def load_dataset(
    cfg: DictConfig, location: Any, dataset: str, environment: Any, params: Dict[str, Any]
) -> CheckedDataset:
    """Dataset ``dataset`` of the vault ``location`` (:func:`og_marl_omsd.runner.plan.prepare_dataset`),
    checked against the environment and the settings; its returns, fingerprint and reward scale."""

    order = params.get("agent_order")
    if order is not None and len(order) != len(environment.agents):
        raise UserError(
            f"Bad system configuration: system.agent_order={list(order)} orders {len(order)} agents, but "
            f"{cfg.task.name} has {len(environment.agents)} ({', '.join(environment.agents)}). Give a "
            "permutation of 0..N-1 or leave it null."
        )
    experience = read_checked_dataset(location, dataset)
    checked = validate_experience(
        experience,
        environment,
        location.dataset_path(dataset),
        f"{cfg.env.name} ({cfg.task.env_name}/{cfg.task.scenario})",
        cfg.clip_actions,
    )
    if cfg.replay.batch_size > checked["timesteps"]:
        from og_marl_omsd.upstream.og_marl_run import ReplaySchema

        raise UserError(
            f"Bad run settings: replay.batch_size={cfg.replay.batch_size} is larger than dataset "
            f"{dataset}'s {checked['timesteps']} timesteps. Choose replay.batch_size <= "
            f"{checked['timesteps']} (the default is {ReplaySchema.batch_size})."
        )
    returns = episode_returns(experience)
    return CheckedDataset(
        location,
        dataset,
        checked["timesteps"],
        checked["actions_outside"],
        returns,
        fingerprint(experience),
        reward_scale(cfg.task, returns),
    )


def open_run_dir(cfg: DictConfig, plan: RunPlan, data: CheckedDataset) -> Any:
    """Take the run directory (its lock, returned), clear what an interrupted process left, write
    ``config.yaml`` unless a good one is there, and say what runs on what."""
    from og_marl_omsd import host

    os.makedirs(plan.run_dir, exist_ok=True)
    lock = _lock_run_dir(plan.run_dir)
    check_run_data(plan.run_dir, data.location, data.uid, data.fingerprint)  # one run directory, one dataset
    remove_leftovers(plan.run_dir)  # temporaries of an interrupted process
    if not plan.cache_read_only:
        remove_leftovers(cfg.pretrained_dir)
    config_path = os.path.join(plan.run_dir, "config.yaml")
    try:
        stored_config = OmegaConf.load(config_path) if os.path.isfile(config_path) else None
    except Exception:  # damaged: reported by check_same_run, written again here
        stored_config = None
    if stored_config is None:
        write_text(config_path, OmegaConf.to_yaml(cfg, resolve=True))
    print(
        f"[run] {cfg.system.name} on {cfg.task.name}/{plan.dataset} seed {cfg.seed} (host: {host.HOST}); run dir "
        f"{plan.run_dir}",
        flush=True,
    )
    print(
        f"[run] dataset {data.location.dataset_path(data.uid)}: {data.timesteps} steps, "
        f"{data.returns.size} episodes, return {data.returns.mean():.3f} +- {data.returns.std():.3f}; fingerprint "
        f"{data.fingerprint}; reward scale {data.reward_scale:.4g}",
        flush=True,
    )
    if data.actions_outside:
        print(
            f"[run] clip_actions=true: {data.actions_outside} action values outside [-1, 1] are clipped for training",
            flush=True,
        )
    return lock


def track_wall_time(run_dir: str, start: float) -> Any:
    """A :class:`~og_marl_omsd.runner.tracking.WallClock` for this process (started at ``start``), recorded
    now and every few seconds of training (:func:`og_marl_omsd.support.progress.set_heartbeat`)."""
    clock = tracking.WallClock(run_dir, start)
    clock.record()
    progress.set_heartbeat(clock.record)
    return clock


def make_run_logger(cfg: DictConfig, plan: RunPlan, environment: Any) -> Any:
    """The run's logger: evaluation lines (+ wandb) and the marl-eval JSON of the run directory."""
    from og_marl_omsd.runner.logger import MarlEvalWriter, RunLogger  # its RunLogger is the host's logger

    loggers = tracking.make_loggers(cfg, plan.run_dir, plan.dataset)  # readable evaluation lines (+ wandb)
    # metrics.json in both host modes: written atomically, named so that runs never merge in marl-eval.
    env_name, task_name, algorithm = marl_eval_names(cfg, plan.dataset, plan.params)
    json_writer = MarlEvalWriter(plan.run_dir, algorithm, task_name, env_name, int(cfg.seed))
    return RunLogger(loggers, json_writer, environment=environment)


def build_system_and_buffer(
    cfg: DictConfig, system_class: type, params: Dict[str, Any], environment: Any, logger: Any, data: CheckedDataset
) -> Tuple[Any, Any]:
    """The replay buffer, filled from the dataset's vault, and the system (seeded, reward scale set)."""
    import tensorflow as tf

    from og_marl_omsd import host

    tf.random.set_seed(cfg.seed)
    np.random.seed(cfg.seed)
    buffer = host.FlashbaxReplayBuffer(
        sequence_length=cfg.replay.sequence_length, batch_size=cfg.replay.batch_size, seed=cfg.seed
    )
    location = data.location  # read where the vault config wrote it (a quick config has its own source)
    buffer.populate_from_vault(
        location.source, location.env, location.scenario, data.uid, rel_dir=os.path.abspath(location.rel_dir)
    )
    system = system_class(environment, logger, **params, reward_scale=data.reward_scale, seed=cfg.seed)
    return system, buffer


def enable_checkpoints(
    system: Any, cfg: DictConfig, run_dir: str, logger: Any, dataset_fingerprint: Optional[str] = None
) -> None:
    """Checkpoint every stage in ``run_dir/checkpoints`` (the logger's evaluation record with the
    actors; each checkpoint records ``dataset_fingerprint`` and restores only with it), and
    announce the stages for the whole run's progress line."""
    system.enable_checkpointing(
        os.path.join(run_dir, "checkpoints"),
        int(cfg.checkpoint_every),
        run_state=logger,
        dataset_fingerprint=dataset_fingerprint,
    )
    tracking.plan_stages(system, int(cfg.training_steps))


def pretrain(
    system: Any, buffer: Any, cfg: DictConfig, data: CheckedDataset, cache_read_only: bool = False
) -> Dict[str, str]:
    """The pretraining stages (loaded from the shared cache when it holds them); their cache keys."""
    from og_marl_omsd.systems.pretraining import PretrainedCache

    return system.pretrain(buffer, PretrainedCache(cfg.pretrained_dir, read_only=cache_read_only), data.fingerprint)


def train_and_evaluate(system: Any, buffer: Any, cfg: DictConfig) -> None:
    """The actor stage with the host's training loop and its evaluations."""
    system.train(
        buffer,
        training_steps=int(cfg.training_steps),
        evaluation_every=int(cfg.evaluation_every),
        num_eval_episodes=int(cfg.num_eval_episodes),
    )


def finish_run(
    cfg: DictConfig,
    plan: RunPlan,
    data: CheckedDataset,
    system: Any,
    environment: Any,
    logger: Any,
    cache_keys: Dict[str, str],
    start: float,
    pretrain_seconds: float,
    clock: Optional[Any] = None,
) -> Dict[str, Any]:
    """Export the policy, close the logger (marl-eval's final entries) and return ``results.json``'s content.
    With ``clock`` (:class:`og_marl_omsd.runner.tracking.WallClock`) the wall time is the sum over every process
    of the run, each one's share in ``wall_time_processes``; without it, this process's."""
    from og_marl_omsd import host

    final = logger.evaluations[-1]
    artefacts = tracking.finish_run(system, environment, plan.run_dir, cfg, plan.dataset)  # policy/, provenance
    logger.write_absolute({k: v for k, v in final.items() if k != "training_steps"})
    logger.close()
    return run_results(
        cfg,
        plan.dataset,
        host.HOST,
        logger.evaluations,
        {**system.stage_steps, "actors": int(system.training_step_ctr)},
        dataset_statistics=data.statistics(),
        reward_scale=data.reward_scale,
        pretrained_cache_keys=cache_keys,
        **wall_time(clock, start),
        pretrain_wall_time_seconds=pretrain_seconds,
        **artefacts,
    )


def wall_time(clock: Optional[Any], start: float) -> Dict[str, Any]:
    """``wall_time_seconds`` (every process of the run) and ``wall_time_processes`` (each one's share)."""
    if clock is None:
        return {"wall_time_seconds": time.time() - start}
    now = time.time()
    clock.record()
    return {"wall_time_seconds": clock.total(now), "wall_time_processes": clock.processes(now)}
