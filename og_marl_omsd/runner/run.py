"""Run one system on one dataset: ``python -m og_marl_omsd.run system=omsd env=bandit``.

Data flow: vault (generated on first use) -> host replay buffer -> pretraining (IQL critic,
behaviour diffusion; cached by dataset content and stage config) -> actor extraction
(OG-MARL's ``train`` loop) -> evaluation. The run directory gets the resolved config
(``config.yaml``), ``results.json``, marl-eval ``metrics.json`` and ``checkpoints/``.
Hydra never changes the working directory.

Runs survive faults: the run directory is a function of the command (same command, same
directory), every stage checkpoints every ``checkpoint_every`` steps and a restarted run
resumes where it stopped; a finished run prints its results. Bad input (configuration,
dataset, output directory) is one paragraph and exit code 2 before anything is written;
a stage stopped by a NaN, a failed checkpoint write or a full disk exits with code 3;
Ctrl-C prints one line (exit 130). Every file is written atomically (:mod:`og_marl_omsd.support.files`).
With ``-m`` every job runs and the failed ones are listed at the end (:mod:`og_marl_omsd.runner.sweep`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple, cast

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from og_marl_omsd.runner.devices import setup_devices  # also steps' and evaluate's, through this module
from og_marl_omsd.runner.validation import RUN_RULES, check_dataset_name, rule_problems, unknown_keys
from og_marl_omsd.support.errors import StageStopped, UserError
from og_marl_omsd.support.files import try_lock, write_json
from og_marl_omsd.systems.defaults import identity_neutral, register_system_defaults
from og_marl_omsd.upstream.og_marl_systems import register_configs as register_og_marl_system_configs

# Settings that do not change a run's results: left out of its identity (directory hash and
# the check that an existing run directory holds the same run).
# budget_scale: the budgets it scaled are in the identity (and a run made before it existed keeps its directory).
NOT_RUN_IDENTITY = ("run_dir", "runs_root", "pretrained_dir", "logger", "checkpoint_every", "budget_scale")


@dataclass
class ReplaySchema:
    sequence_length: int = 2
    batch_size: int = 256


@dataclass
class LoggerSchema:
    wandb: bool = False
    wandb_project: str = "og-marl-omsd"
    terminal_log_every: float = 5.0
    progress_every: float = 30.0
    verbose: bool = False  # true: the libraries' log lines and warnings reach the terminal


@dataclass
class RunSchema:
    seed: int = 0
    training_steps: int = 1000
    evaluation_every: int = 5000
    num_eval_episodes: int = 32
    dataset: Optional[str] = None
    run_dir: Optional[str] = None
    runs_root: str = "runs"
    vault_dir: str = "vaults"
    pretrained_dir: str = "runs/pretrained"
    checkpoint_every: int = 1000
    clip_actions: bool = False
    budget_scale: float = 1.0
    replay: ReplaySchema = field(default_factory=ReplaySchema)
    logger: LoggerSchema = field(default_factory=LoggerSchema)
    system: Any = MISSING
    env: Any = MISSING
    task: Any = MISSING


ConfigStore.instance().store(name="run_schema", node=RunSchema)
register_system_defaults()  # system_defaults/score_regularised: the constructor defaults (systems/defaults.py)
register_og_marl_system_configs()  # system=iddpg_bc etc.: OG-MARL's systems, configs from their YAML defaults


def system_parameters(system_class: type, params: Dict[str, Any]) -> Dict[str, Any]:
    """Check ``system.*`` against the constructor: unknown names and wrong types are errors."""
    signature = inspect.signature(system_class.__init__)  # type: ignore[misc]
    known = {
        name: p.default for name, p in signature.parameters.items() if name not in ("self", "environment", "logger")
    }
    reserved = {"reward_scale", "seed"}  # set by the runner
    problems = []
    for name, value in params.items():
        if name in reserved:
            setting = "seed=" if name == "seed" else "task.reward_normalisation="
            problems.append(f"system.{name} is set by the runner (use {setting})")
        elif name not in known:
            problems.append(f"unknown parameter system.{name}")
        else:
            default = known[name]
            if isinstance(default, bool) and not isinstance(value, bool):
                problems.append(f"system.{name} must be true or false, got {value!r}")
            elif (
                isinstance(default, (int, float))
                and not isinstance(default, bool)
                and (isinstance(value, bool) or not isinstance(value, (int, float)))
            ):
                problems.append(f"system.{name} must be a number, got {value!r}")
            elif (
                isinstance(default, int)
                and not isinstance(default, bool)
                and isinstance(value, float)
                and not value.is_integer()
            ):
                problems.append(f"system.{name} must be an integer, got {value!r}")
    if problems:
        choices = ", ".join(sorted(set(known) - reserved))
        raise UserError(
            "Bad system configuration: " + "; ".join(problems) + f". Parameters of {system_class.__name__}: {choices}."
        )
    params = {
        k: (int(v) if isinstance(known[k], int) and not isinstance(known[k], bool) and isinstance(v, float) else v)
        for k, v in params.items()
    }
    check = getattr(system_class, "check_parameters", None)
    if check is not None:
        try:
            check(**params)
        except ValueError as error:
            raise UserError(f"Bad system configuration: {error} Set them with system.<name>=<value>.") from None
    return params


def configured_system_parameters(cfg: DictConfig, system_class: type) -> Dict[str, Any]:
    """``system.*`` checked by :func:`system_parameters` and written back normalised into ``cfg``
    (``critic_steps=1e6`` becomes ``1000000``), so one run has one directory and one config.
    An env preset's keys that this system does not take (``beta`` for BC) are left out of both."""
    from og_marl_omsd.upstream.runner import offline_system_parameters

    params = offline_system_parameters(cfg, system_class)
    with open_dict(cfg):
        for key in [key for key in cfg.system if key != "name" and key not in params]:
            del cfg.system[key]
        for key, value in params.items():
            cfg.system[key] = value
    return params


def plan_run(cfg: DictConfig) -> Tuple[type, Dict[str, Any], str, str]:
    """The run ``cfg`` describes: ``(system class, its parameters, dataset, run directory)``.
    Normalises ``cfg.system`` in place (:func:`configured_system_parameters`); the comparison
    harness calls this to find a job's run directory exactly as :func:`run` does."""
    from og_marl_omsd.runner.registry import UnknownSystemError, load_system

    check_run_settings(cfg)
    scale_budgets(cfg)
    try:
        system_class = load_system(cfg.system.name)
    except UnknownSystemError as error:
        raise UserError(str(error)) from None
    dataset = cfg.dataset or cfg.task.dataset
    if not hasattr(system_class, "pretrain"):  # OG-MARL's own systems: their runner reads cfg as it is
        return system_class, {}, dataset, cfg.run_dir or default_run_dir(cfg, dataset)
    params = configured_system_parameters(cfg, system_class)
    check_memory(system_class, params, int(cfg.replay.batch_size))
    return system_class, params, dataset, cfg.run_dir or default_run_dir(cfg, dataset)


def check_memory(system_class: type, params: Dict[str, Any], batch_size: int) -> None:
    """Networks that cannot fit in this machine's memory are refused before anything runs
    (their lower-bound size: :func:`~og_marl_omsd.systems.stage_configs.training_memory_lower_bound`)."""
    from og_marl_omsd.runner.validation import check_fits_in_memory
    from og_marl_omsd.systems.stage_configs import training_memory_lower_bound

    signature = inspect.signature(system_class.__init__).parameters  # type: ignore[misc]
    values = {name: p.default for name, p in signature.items() if p.default is not inspect.Parameter.empty}
    values.update(params)
    check_fits_in_memory(training_memory_lower_bound(values, batch_size), batch_size)


BUDGETS = ("training_steps", "evaluation_every", "num_eval_episodes", "system.critic_steps", "system.behaviour_steps")


def scale_budgets(cfg: DictConfig) -> None:
    """``budget_scale=<s>`` (a smoke run: ``0.01``) multiplies every stage's budget: the steps of
    the critic, the behaviour model and the actors (``training_steps``), the evaluation period
    (the same number of evaluations) and the episodes per evaluation, rounded, at least 1 (a
    stage set to 0 stays off). In place, once per config; ``config.yaml`` records the results."""
    scale = float(cfg.get("budget_scale", 1.0))
    if scale == 1.0 or cfg._get_flag("budgets_scaled"):
        return
    with open_dict(cfg):
        for dotted in BUDGETS:
            node, key = (cfg.system, dotted.split(".", 1)[1]) if dotted.startswith("system.") else (cfg, dotted)
            if key in node and node[key] is not None and int(node[key]) > 0:
                node[key] = max(1, int(round(int(node[key]) * scale)))
    cfg._set_flag("budgets_scaled", True)


def run_identity(resolved: Dict[str, Any], dataset: Optional[str] = None) -> Dict[str, Any]:
    """The settings that make a run what it is: the resolved config less ``NOT_RUN_IDENTITY``
    and less the system hyperparameters added after the pin that sit at their default
    (:func:`identity_neutral`), with the dataset resolved
    (``dataset`` or the task's default)."""
    identity = {key: value for key, value in resolved.items() if key not in NOT_RUN_IDENTITY}
    if isinstance(identity.get("system"), dict):  # hyperparameters added later, at their default
        identity["system"] = {k: v for k, v in identity["system"].items() if not identity_neutral(k, v)}
    identity["dataset"] = dataset or resolved.get("dataset") or resolved["task"]["dataset"]
    return identity


def default_run_dir(cfg: DictConfig, dataset: str) -> str:
    """``runs/<system>/<env>-<task>/<dataset>/seed<seed>-<hash>``: the same command finds its run.
    On data of another vault config than the task's own (``task.vault_config=2ant-quick``) the
    dataset part names it, ``<dataset>@<vault config>``, so a smoke result never looks like one
    on the real dataset."""
    resolved = run_identity(cast(Dict[str, Any], OmegaConf.to_container(cfg, resolve=True)), dataset)
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:8]
    # (inlined, not a helper: the OG-MARL export takes these functions by name)
    vault_config = os.path.splitext(os.path.basename(str(cfg.task.get("vault_config") or cfg.task.name)))[0]
    data = dataset if vault_config == cfg.task.name else f"{dataset}@{vault_config}"
    return os.path.join(
        cfg.runs_root, cfg.system.name, f"{cfg.env.name}-{cfg.task.name}", data, f"seed{cfg.seed}-{digest}"
    )


def reward_scale(task: DictConfig, returns: np.ndarray) -> float:
    """``1000 / (max - min episode return)`` for locomotion (SRPO/IQL), else 1."""
    normalisation = task.get("reward_normalisation", "episode_return_range")  # OG-MARL's tasks: locomotion
    if normalisation == "none":
        return 1.0
    if normalisation == "episode_return_range":
        spread = float(returns.max() - returns.min()) if returns.size else 0.0
        return 1000.0 / spread if spread > 0 else 1.0
    raise UserError(f"task.reward_normalisation must be 'none' or 'episode_return_range', got {normalisation!r}.")


def prepare_dataset(cfg: DictConfig, dataset: str) -> Any:
    """The dataset's vault location; generates it from the task's vault config when missing.

    A task without ``vault_config`` (OG-MARL's own, as ``og_marl.run``'s configs name them) is
    read where OG-MARL keeps it, ``<vault_dir>/<source>/<env_name>/<scenario>.vlt/<dataset>``."""
    from og_marl_omsd.datasets.generate import ensure_datasets, load_vault_config, location_of
    from og_marl_omsd.datasets.vaults import VaultLocation
    from og_marl_omsd.runner.validation import check_dataset_folder, check_writable_directory

    if not cfg.task.get("vault_config"):
        place = VaultLocation(str(cfg.task.source), str(cfg.task.env_name), str(cfg.task.scenario), str(cfg.vault_dir))
        if place.exists(dataset):
            return place
        raise UserError(
            f"No dataset {dataset!r} for task {cfg.task.name}: looked for {place.dataset_path(dataset)} (on disk "
            f"there: {', '.join(place.available()) or 'none'}). Choose one with dataset=<name>, point vault_dir=<dir> "
            "at your vaults, download the task's vault (OG-MARL's download_and_unzip_vault), or use this plugin's "
            "generated datasets with +task.vault_config=<name> (vault_configs/)."
        )
    try:
        vault_config = load_vault_config(cfg.task.vault_config)
    except FileNotFoundError as error:
        raise UserError(
            f"Task {cfg.task.name} names vault config {cfg.task.vault_config!r}, which does not exist: "
            f"{error} Add it to vault_configs/ or set task.vault_config=<name or path>."
        ) from None
    check_dataset_name(dataset)  # before any path is built from it
    location = location_of(vault_config, cfg.vault_dir)
    check_dataset_folder(location, dataset)  # readable (else the OS error, named), and complete if it is there
    if location.exists(dataset):
        return location
    defined = list(vault_config.get("datasets", {}))
    if dataset not in defined:
        on_disk = location.available()
        raise UserError(
            f"Dataset {dataset!r} does not exist for task {cfg.task.name}. Available on disk in {location.path}: "
            f"{', '.join(on_disk) or 'none'}; defined by vault_configs/{vault_config['name']}.yaml (generated on first "
            f"use): {', '.join(defined)}. Choose one with dataset=<name>, or generate them all with "
            f"`python -m og_marl_omsd.datasets generate {vault_config['name']}`."
        )
    from og_marl_omsd.datasets.availability import require_generated

    require_generated(vault_config, location, dataset, cfg.vault_dir, cfg.task.name)  # big sets: exit 2 + command
    check_writable_directory(cfg.vault_dir, "vault directory", "vault_dir")
    try:
        ensure_datasets(cfg.task.vault_config, [dataset], cfg.vault_dir)
    except OSError as error:
        from og_marl_omsd.runner.validation import os_error_paragraph

        raise UserError(
            os_error_paragraph(error, location.path, f"write dataset {dataset} to")
            + " Nothing of the new dataset was kept (its partial write was removed); other datasets are untouched."
        ) from None
    return location


def vault_of_task(cfg: DictConfig, dataset: str) -> Any:
    """``(source, env, scenario, vault_dir)`` of the dataset, generated first when missing."""
    location = prepare_dataset(cfg, dataset)
    return location.source, location.env, location.scenario, location.rel_dir


def dataset_source(cfg: DictConfig, dataset: str) -> Optional[Tuple[str, str, str, str]]:
    """``og_marl.run``'s ``og_marl.dataset_sources`` entry point: a task that names one of this
    plugin's vault configs (``task.vault_config``, e.g. ``+task.vault_config=2halfcheetah-quick``)
    is read (and generated when cheap) as :func:`vault_of_task` does; any other task is not
    this plugin's (``None``)."""
    if not cfg.task.get("vault_config"):
        return None
    return cast(Tuple[str, str, str, str], tuple(vault_of_task(cfg, dataset)))


def check_run_settings(cfg: DictConfig) -> None:
    """The run's own numbers and the task/env pairing (before anything is loaded or written)."""
    resolved = cast(Dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    unknown = unknown_keys(resolved, {"": RunSchema, "replay": ReplaySchema, "logger": LoggerSchema})
    if unknown:
        raise UserError(
            f"Unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (added with +?): it "
            "would be ignored. Settings: "
            + ", ".join(f.name for f in fields(RunSchema))
            + "; replay."
            + ", replay.".join(f.name for f in fields(ReplaySchema))
            + ". Remove it or fix its name."
        )
    check_dataset_name(cfg.dataset or cfg.task.dataset)  # a name, not a path: before any path is built
    problems = rule_problems(_flatten(resolved), RUN_RULES)
    if problems:
        raise UserError("Bad run settings: " + "; ".join(problems) + ".")
    if cfg.logger.wandb and importlib.util.find_spec("wandb") is None:
        raise UserError(
            "logger.wandb=true needs the wandb package, which is not installed. Install it with "
            "`pip install wandb` (or `pip install og-marl-omsd[wandb]`), or run with logger.wandb=false."
        )
    if cfg.task.env != cfg.env.name:
        raise UserError(
            f"Task {cfg.task.name!r} belongs to env {cfg.task.env!r}, not {cfg.env.name!r}. Pick a task of "
            f"env={cfg.env.name} (see og_marl_omsd/configs/task/) or env={cfg.task.env}."
        )


def check_same_run(cfg: DictConfig, dataset: str, run_dir: str) -> None:
    """An existing run directory must hold this very run (else resuming would mix two runs)."""
    stored_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(stored_path):
        return
    try:
        stored = run_identity(cast(Dict[str, Any], OmegaConf.to_container(OmegaConf.load(stored_path), resolve=True)))
    except Exception as error:  # any parse failure: the file is damaged
        print(
            f"[resume] {stored_path} is damaged ({type(error).__name__}); it is written again for this run", flush=True
        )
        return
    current = run_identity(cast(Dict[str, Any], OmegaConf.to_container(cfg, resolve=True)), dataset)
    if stored == current:
        return
    flat_stored, flat_current = _flatten(stored), _flatten(current)
    differences = [
        f"{key}: {flat_stored.get(key, '<unset>')!r} there, {flat_current.get(key, '<unset>')!r} now"
        for key in sorted(set(flat_stored) | set(flat_current))
        if flat_stored.get(key) != flat_current.get(key)
    ]
    raise UserError(
        f"Run directory {run_dir} holds a different run ({'; '.join(differences[:8])}"
        f"{'; ...' if len(differences) > 8 else ''}). Resuming it with other settings would mix two runs. Run with "
        "its settings to resume or see it, or choose another run_dir=<path> (leave run_dir unset to get a directory "
        "of its own for every configuration)."
    )


def _flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _lock_run_dir(run_dir: str) -> Any:
    """Hold ``run_dir/.lock`` for this process (released when it ends, even by SIGKILL)."""
    handle = open(os.path.join(run_dir, ".lock"), "w")
    if not try_lock(handle):
        handle.close()
        raise UserError(
            f"Another process is running in {run_dir}. Wait for it to finish, or choose another run_dir=<path>."
        ) from None
    _HELD_LOCKS.append(handle)
    return handle


_HELD_LOCKS: list = []


def _releases_run_lock(function: Any) -> Any:
    """Release the run directory's lock when ``function`` returns or raises (a run stopped by an
    error in a process that goes on, such as a sweep or a test, must not keep its directory)."""
    import functools

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            from og_marl_omsd.support import progress

            progress.set_heartbeat(None)  # this run's wall-time record ends with it
            while _HELD_LOCKS:
                _HELD_LOCKS.pop().close()

    return wrapper


@_releases_run_lock
def run(cfg: DictConfig) -> Dict[str, Any]:
    """Run one configured experiment (or resume it); returns the results written to ``results.json``.

    The steps are :mod:`og_marl_omsd.runner.steps` (its docstring shows the sequence)."""
    from og_marl_omsd.runner import steps

    start = time.time()
    setup_devices()  # before anything (a system's import, a dataset's generation) starts TF or JAX
    plan = steps.prepare_run(cfg)
    if not plan.pretrains:  # OG-MARL's own systems: no pretraining stage
        from og_marl_omsd.support.provenance import collect
        from og_marl_omsd.upstream.runner import run_offline_system

        return run_offline_system(
            cfg,
            plan.system_class,
            prepare_vault=vault_of_task,
            more_results=lambda: {"provenance": collect()},
            check_data=steps.check_offline_run_data,
        )
    location = prepare_dataset(cfg, plan.dataset)
    if plan.completed is not None:
        return steps.report_completed(plan, location)  # only if made from this very dataset
    environment = steps.make_environment(cfg)
    data = steps.load_dataset(cfg, location, plan.dataset, environment, plan.params)
    lock = steps.open_run_dir(cfg, plan, data)
    clock = steps.track_wall_time(plan.run_dir, start)
    logger = steps.make_run_logger(cfg, plan, environment)
    system, buffer = steps.build_system_and_buffer(cfg, plan.system_class, plan.params, environment, logger, data)
    steps.enable_checkpoints(system, cfg, plan.run_dir, logger, data.fingerprint)
    cache_keys = steps.pretrain(system, buffer, cfg, data, plan.cache_read_only)
    pretrain_seconds = time.time() - start
    steps.train_and_evaluate(system, buffer, cfg)
    results = steps.finish_run(cfg, plan, data, system, environment, logger, cache_keys, start, pretrain_seconds, clock)
    write_json(plan.results_path, results)
    lock.close()
    print_summary(results)
    return results


def run_results(
    cfg: DictConfig,
    dataset: str,
    host_name: str,
    evaluations: List[Dict[str, float]],
    stage_steps: Dict[str, int],
    **extra: Any,
) -> Dict[str, Any]:
    """``results.json``'s content: the run's identity, its final evaluation and evaluation
    curve, the steps of each stage, then ``extra`` (in the order given)."""
    vault_config = os.path.splitext(os.path.basename(str(cfg.task.get("vault_config") or cfg.task.name)))[0]
    return {
        "system": cfg.system.name,
        "env": cfg.env.name,
        "task": cfg.task.name,
        "dataset": dataset,
        **({"vault_config": vault_config} if vault_config != cfg.task.name else {}),  # not the task's own data
        "seed": int(cfg.seed),
        "host": host_name,
        "final_evaluation": evaluations[-1],
        "evaluation_curve": evaluations,
        "stage_steps": stage_steps,
        **extra,
    }


def print_summary(results: Dict[str, Any]) -> None:
    final = results["final_evaluation"]
    line = f"Final mean return: {final['mean_episode_return']:.4f}"
    if "coordination_rate" in final:
        line += f" | coordination rate: {final['coordination_rate']:.2f}"
    processes = results.get("wall_time_processes") or []
    shares = f" over {len(processes)} processes" if len(processes) > 1 else ""
    vault_config = results.get("vault_config")
    data = f" on vault config {vault_config}" if vault_config else ""
    if vault_config and str(vault_config).endswith("-quick"):
        data += " (quick data for smoke runs: not a result on the real dataset)"
    print(
        f"{line} | wall time {results['wall_time_seconds']:.1f} s{shares} | results: {results['system']} "
        f"{results['task']}/{results['dataset']}{data} seed {results['seed']}",
        flush=True,
    )
    if "stage_steps" in results:
        print("Steps: " + ", ".join(f"{stage} {steps}" for stage, steps in results["stage_steps"].items()), flush=True)


INTERRUPTED = "Interrupted. Run the same command again to resume from the last checkpoint."


def failure_report(error: BaseException) -> Optional[Tuple[int, str]]:
    """``(exit code, one paragraph)`` for an error the user can act on, ``None`` for a bug."""
    from og_marl_omsd.support.files import is_disk_error

    if isinstance(error, UserError):
        return 2, f"Error: {error}"
    if isinstance(error, StageStopped):
        return 3, f"Stopped: {error}"
    if is_disk_error(error):
        import errno

        filename, strerror = getattr(error, "filename", None), getattr(error, "strerror", None)
        where = f" {filename}" if filename else ""
        code = getattr(error, "errno", None)
        if code in (errno.EACCES, errno.EPERM):
            cause = f"a permission problem, not a full disk or damaged data: give this user access to{where or ' it'}"
        elif code == errno.EROFS:
            cause = "the file system is read-only: choose a writable location (run_dir=, pretrained_dir=)"
        elif code == errno.EIO:
            cause = "the disk reported an input/output error: check it before trusting its files"
        else:  # ENOSPC, EDQUOT
            cause = "the disk (or quota) is full: free disk space"
        return 3, (
            f"Stopped: {strerror or error} ({errno.errorcode.get(code or 0, 'OS error')}) at{where or ' a file'}: "
            f"{cause}, then run the same command again: it resumes from its last checkpoint, and the temporary "
            "files this run left behind are removed then."
        )
    return None


@hydra.main(version_base=None, config_path="../configs", config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from og_marl_omsd.runner import sweep

    sweep.task_started()
    from og_marl_omsd.support import quiet

    quiet.configure(bool(cfg.logger.get("verbose", False)))  # before TensorFlow is imported
    hydra_config = HydraConfig.get() if HydraConfig.initialized() else None
    multirun = hydra_config is not None and hydra_config.mode == RunMode.MULTIRUN
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        run(cfg)
    except KeyboardInterrupt:
        if full_error:
            raise
        print(INTERRUPTED, file=sys.stderr, flush=True)
        sys.exit(130)
    except Exception as error:  # reported, then re-raised unless the user can act on it
        report = failure_report(error)
        if full_error or (report is None and not multirun):
            raise
        if report is None:  # a bug in one job of a sweep: show it, go on with the others
            import traceback

            traceback.print_exc()
            report = (1, f"Failed: {type(error).__name__}: {error}")
        code, message = report
        print(message, file=sys.stderr, flush=True)
        if not multirun or hydra_config is None:
            sys.exit(code)
        sweep.record_failure(hydra_config.job.num, " ".join(hydra_config.overrides.task), code, message)


def cli() -> None:
    """``python -m og_marl_omsd.run``: Hydra's own errors (a bad override, a wrong type, ...) exit with 2
    like every other input error; Ctrl-C prints one line."""
    from og_marl_omsd.runner import sweep

    try:
        main()
    except SystemExit as exit_:
        if exit_.code == 1 and not sweep.has_task_started():
            sys.exit(2)
        raise
    except KeyboardInterrupt:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(INTERRUPTED, file=sys.stderr, flush=True)
        sys.exit(130)


if __name__ == "__main__":
    cli()
