"""Run a system that has no pretraining stage: any OG-MARL ``BaseOfflineSystem`` subclass.

``og_marl_omsd.runner.run`` hands such systems (OG-MARL's ``iddpg_bc``, ``maddpg_cql``, ``omar``,
``continuous_bc``, or another distribution's) to :func:`run_offline_system`: the same vault,
the same environment and evaluation (OG-MARL's ``train`` loop: evaluation every
``evaluation_every`` steps with ``num_eval_episodes`` episodes, 10x at the end), the same run
directory scheme, ``results.json`` and summary line as the score-regularised systems.

This module is also the body of OG-MARL's ``og_marl/run.py``: ``python -m
og_marl_omsd.upstream export`` writes it there with the block between the ``HOST`` markers
replaced by OG-MARL's own modules, and with :func:`run_registered` as the command's entry:
a system class with a ``run_experiment(cfg)`` hook (this plugin's systems: pretraining
stages, caches, resume) runs itself, any other through :func:`run_offline_system`. So it must
only use the names of the host block, the standard library, numpy, hydra and omegaconf, and
the runner functions the export takes from ``og_marl_omsd.runner.run`` and ``og_marl_omsd.runner.registry``.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from importlib.metadata import entry_points
from typing import Any, Callable, Dict, Optional, Tuple, cast

import numpy as np
from omegaconf import DictConfig, OmegaConf

from og_marl_omsd.runner.logger import EpisodeReturns, EvaluationRecord, MarlEvalWriter
from og_marl_omsd.runner.naming import marl_eval_task_name, with_settings
from og_marl_omsd.runner.registry import UnknownSystemError, load_registered_system
from og_marl_omsd.runner.run import (
    NOT_RUN_IDENTITY,
    _flatten,
    check_run_settings,
    default_run_dir,
    print_summary,
    run_results,
    system_parameters,
)
from og_marl_omsd.support.errors import UserError
from og_marl_omsd.support.files import write_json, write_text

# HOST BEGIN: the export replaces this block with OG-MARL's own modules.
HOST_NAME = "og-marl-omsd"


def host_modules() -> Any:
    """``get_environment``, ``FlashbaxReplayBuffer``, ``TerminalLogger``, ``WandbLogger``, ``HOST``."""
    from og_marl_omsd import host

    return host


# HOST END

VaultPlace = Tuple[str, str, str, str]  # source, env_name, scenario, rel_dir


DATASET_SOURCES = "og_marl.dataset_sources"  # entry points: (cfg, dataset) -> VaultPlace, or None when not theirs
# Settings that name no setting of a run's results in marl-eval's hierarchy (they are its other levels or places).
NOT_MARL_EVAL_SETTINGS = ("seed", "dataset", "env", "task", "system", "vault_dir", *NOT_RUN_IDENTITY)


CONFIG_MODULE = "og_marl_omsd.configs"  # the runner's own configs (the export names OG-MARL's)


def command_line_system_keys() -> set:
    """``system.<key>`` names given on the command line (empty outside a hydra app)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    except (ImportError, ValueError):
        overrides = []
    keys = set()
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("system."):
            keys.add(key[len("system.") :])
    return keys


def composed_defaults(cfg: DictConfig) -> Optional[Dict[str, Any]]:
    """What ``system=<name> env=<env> task=<task>`` composes to with nothing else given (the running
    hydra app's configs, else :data:`CONFIG_MODULE`'s): the defaults a run's settings are told
    apart from. ``None`` when it cannot be composed (a name that is no config option)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    choices = [f"system={cfg.system.name}", f"env={cfg.env.name}", f"task={cfg.task.name}"]
    try:
        if GlobalHydra.instance().is_initialized():
            composed = compose(config_name="config", overrides=choices)
        else:
            with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
                composed = compose(config_name="config", overrides=choices)
    except Exception:  # hydra's own errors (a missing config option, ...): no defaults to compare with
        return None
    return cast(Dict[str, Any], OmegaConf.to_container(composed, resolve=True))


def marl_eval_names(
    cfg: DictConfig,
    dataset: str,
    params: Optional[Dict[str, Any]] = None,
    defaults: Optional[Dict[str, Any]] = None,
) -> Tuple[str, str, str]:
    """``(env, task, algorithm)`` of the run in marl-eval's hierarchy, so that concatenating any
    runs' ``metrics.json`` never merges two datasets or two settings, however the runs were
    started: the task carries the dataset and any ``task.*`` setting that is not the task's
    default (``2halfcheetah-Medium@vault_config=2halfcheetah-quick``), the algorithm carries the
    system's ``beta`` (when it has one) and every other setting that shapes results and is not
    the default (``iddpg_bc@bc_alpha=2.5@training_steps=50000``). ``defaults``: the config to
    compare with (default :func:`composed_defaults`); ``params``: the system's parameters
    (default ``system.*``), an env preset's key the system does not take being no setting of it."""
    system = cast(Dict[str, Any], OmegaConf.to_container(cfg.system, resolve=True)) if params is None else params
    resolved = cast(Dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    defaults = composed_defaults(cfg) if defaults is None else defaults
    flat = _flatten(resolved) if defaults is not None else {}  # no defaults: only beta tells runs apart
    reference = _flatten(defaults) if defaults is not None else {}
    task_settings: Dict[str, Any] = {}
    settings: Dict[str, Any] = {}
    for key, value in flat.items():
        top, _, rest = key.partition(".")
        if key in ("system.name", "task.name", "system.beta") or (key in reference and reference[key] == value):
            continue
        if top == "task":
            task_settings[rest] = value
        elif top == "system":
            if rest in system:
                settings[rest] = value
        elif top not in (*NOT_MARL_EVAL_SETTINGS, "hydra"):
            settings[key] = value
    if system.get("beta") is not None:
        settings["beta"] = system["beta"]
    task = with_settings(marl_eval_task_name(str(cfg.task.name), dataset), task_settings)
    return str(cfg.env.name), task, with_settings(str(cfg.system.name), settings)


def offline_system_parameters(cfg: DictConfig, system_class: type) -> Dict[str, Any]:
    """``system.*`` for the constructor: an env preset's keys for other systems are left out.

    Env presets (``env=bandit``, ``env=mamujoco``) also set the score-regularised systems'
    sizes; a system that does not take such a key ignores it (one line says so). A key given
    on the command line must be the system's (else the usual error listing its parameters).
    """
    system = cast(Dict[str, Any], OmegaConf.to_container(cfg.system, resolve=True))
    params = {key: value for key, value in system.items() if key != "name"}
    accepted = set(inspect.signature(system_class.__init__).parameters)  # type: ignore[misc]
    explicit = command_line_system_keys()
    ignored = sorted(key for key in params if key not in accepted and key not in explicit)
    if ignored:
        print(
            f"[run] {cfg.system.name} takes no {', '.join(ignored)} (env preset for other systems): ignored", flush=True
        )
    return system_parameters(system_class, {key: value for key, value in params.items() if key not in ignored})


def task_vault(cfg: DictConfig, dataset: str) -> VaultPlace:
    """The task's vault: the first ``og_marl.dataset_sources`` entry point that knows the task
    (another distribution's datasets), else OG-MARL's layout,
    ``<vault_dir>/<source>/<env_name>/<scenario>.vlt/<dataset>``, which must exist."""
    for entry in entry_points(group=DATASET_SOURCES):
        place = entry.load()(cfg, dataset)
        if place is not None:
            return cast(VaultPlace, tuple(place))
    place = (str(cfg.task.source), str(cfg.task.env_name), str(cfg.task.scenario), str(cfg.vault_dir))
    path = os.path.join(place[3], place[0], place[1], f"{place[2]}.vlt")
    if not os.path.isdir(os.path.join(path, dataset)):
        on_disk = sorted(name for name in os.listdir(path) if not name.startswith(".")) if os.path.isdir(path) else []
        raise UserError(
            f"No dataset {dataset!r} for task {cfg.task.name}: looked for {os.path.join(path, dataset)} (on disk "
            f"there: {', '.join(on_disk) or 'none'}). Choose one with dataset=<name>, point vault_dir=<dir> at the "
            "directory holding <source>/<env_name>/<scenario>.vlt, or download the task's vault into it: python -c "
            '"from og_marl.vault_utils.download_vault import download_and_unzip_vault; '
            f"download_and_unzip_vault('{place[0]}', '{place[1]}', '{place[2]}', dataset_base_dir='{place[3]}')\"."
        )
    return place


def run_offline_system(
    cfg: DictConfig,
    system_class: type,
    prepare_vault: Optional[Callable[[DictConfig, str], VaultPlace]] = None,
    more_results: Optional[Callable[[], Dict[str, Any]]] = None,
    check_data: Optional[Callable[[str, VaultPlace, str, bool], None]] = None,
) -> Dict[str, Any]:
    """Train and evaluate ``system_class(environment, logger, **system.*)``; returns ``results.json``'s content.

    ``prepare_vault(cfg, dataset)`` finds (or generates) the dataset; the default is
    :func:`task_vault`. ``more_results()`` adds entries to ``results.json`` (the plugin's
    provenance). A finished run directory prints its results instead, after
    ``check_data(run_dir, place, dataset, finished)`` (the plugin's: the run was made from the
    dataset now on disk, else it refuses) accepts it; before a new run it records the dataset.
    """
    start = time.time()
    check_run_settings(cfg)
    params = offline_system_parameters(cfg, system_class)
    dataset = cfg.dataset or cfg.task.dataset
    run_dir = cfg.run_dir or default_run_dir(cfg, dataset)
    results_path = os.path.join(run_dir, "results.json")
    place = (prepare_vault or task_vault)(cfg, dataset)
    if os.path.isfile(results_path):
        with open(results_path) as handle:
            results = json.load(handle)
        if check_data is not None:
            check_data(run_dir, place, dataset, True)  # never the result of other data
        print(f"Run already complete: {run_dir}", flush=True)
        print_summary(results)
        return results
    host, environment, buffer = offline_environment_and_buffer(cfg, place, dataset)
    os.makedirs(run_dir, exist_ok=True)
    if check_data is not None:
        check_data(run_dir, place, dataset, False)
    write_text(os.path.join(run_dir, "config.yaml"), OmegaConf.to_yaml(cfg, resolve=True))
    logger = offline_logger(cfg, host, run_dir, dataset, environment, params)
    print(
        f"[run] {cfg.system.name} ({system_class.__module__}.{system_class.__name__}) on {cfg.task.name}/{dataset} "
        f"seed {cfg.seed} (host: {host.HOST}); run dir {run_dir}",
        flush=True,
    )
    system = system_class(environment, logger, **params)
    system.train(
        buffer,
        training_steps=int(cfg.training_steps),
        evaluation_every=int(cfg.evaluation_every),
        num_eval_episodes=int(cfg.num_eval_episodes),
    )
    logger.write_absolute({k: v for k, v in logger.evaluations[-1].items() if k != "training_steps"})
    logger.close()
    results = run_results(
        cfg,
        dataset,
        host.HOST,
        logger.evaluations,
        {"training": int(system.training_step_ctr)},
        wall_time_seconds=time.time() - start,
        **(more_results() if more_results else {}),
    )
    write_json(results_path, results)
    print_summary(results)
    return results


def offline_environment_and_buffer(cfg: DictConfig, place: VaultPlace, dataset: str) -> Tuple[Any, Any, Any]:
    """The host modules, the task's environment and the replay buffer filled from the vault at ``place``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import jax
    import tensorflow as tf

    jax.config.update("jax_platform_name", "cpu")  # flashbax sampling on the CPU, as OG-MARL's scripts
    host = host_modules()
    environment = EpisodeReturns(
        host.get_environment(cfg.task.source, cfg.task.env_name, cfg.task.scenario, seed=int(cfg.seed))
    )
    tf.random.set_seed(int(cfg.seed))
    np.random.seed(int(cfg.seed))
    buffer = host.FlashbaxReplayBuffer(
        sequence_length=int(cfg.replay.sequence_length), batch_size=int(cfg.replay.batch_size), seed=int(cfg.seed)
    )
    source, env_name, scenario, rel_dir = place
    buffer.populate_from_vault(source, env_name, scenario, dataset, rel_dir=os.path.abspath(rel_dir))
    return host, environment, buffer


def offline_logger(
    cfg: DictConfig, host: Any, run_dir: str, dataset: str, environment: Any, params: Dict[str, Any]
) -> EvaluationRecord:
    """Terminal lines (or wandb), and marl-eval JSON in ``run_dir`` (named by :func:`marl_eval_names`,
    with the episodes' returns the ``environment`` recorded), with the evaluation record."""
    if cfg.logger.wandb:
        loggers = [host.WandbLogger(project=cfg.logger.wandb_project, config=OmegaConf.to_container(cfg, resolve=True))]
    else:
        loggers = [host.TerminalLogger(log_every=cfg.logger.terminal_log_every)]
    env_name, task_name, algorithm = marl_eval_names(cfg, dataset, params)
    return EvaluationRecord(
        loggers, MarlEvalWriter(run_dir, algorithm, task_name, env_name, int(cfg.seed)), episodes=environment
    )


def run_registered(cfg: DictConfig) -> Dict[str, Any]:
    """``og_marl.run``'s run: the ``og_marl.systems`` entry point named ``system.name``; a class
    with a ``run_experiment(cfg)`` hook runs itself, any other through :func:`run_offline_system`."""
    check_run_settings(cfg)
    try:
        system_class = load_registered_system(cfg.system.name)
    except UnknownSystemError as error:
        raise UserError(str(error)) from None
    hook = getattr(system_class, "run_experiment", None)
    if hook is not None:
        return hook(cfg)
    return run_offline_system(cfg, system_class)
