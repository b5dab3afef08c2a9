"""What a run is before it runs: its settings checked, its system and parameters, its dataset
(generated when missing) and its run directory (the same command finds the same directory; an
existing one must hold the same run; one process at a time).

:mod:`og_marl_omsd.runner.steps` and :mod:`og_marl_omsd.runner.run` build on this module (never the
other way round); the comparison harness calls :func:`plan_run` to find a job's run directory
exactly as a run does. The run's schema, settings rules and directory name are
:mod:`og_marl_omsd.upstream.og_marl_run`'s (shared with OG-MARL's exported ``og_marl/run.py``).
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any, Dict, Optional, Tuple, cast

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from og_marl_omsd.datasets.availability import require_generated
from og_marl_omsd.datasets.generate import ensure_datasets, load_vault_config, location_of
from og_marl_omsd.datasets.vaults import VaultLocation
from og_marl_omsd.runner import registry
from og_marl_omsd.runner.validation import (
    check_dataset_folder,
    check_fits_in_memory,
    check_writable_directory,
    os_error_paragraph,
)
from og_marl_omsd.support import progress
from og_marl_omsd.support.errors import UserError
from og_marl_omsd.support.files import try_lock
from og_marl_omsd.systems.defaults import register_system_defaults
from og_marl_omsd.upstream.og_marl_run import (
    _flatten,
    check_dataset_name,
    check_run_settings,
    default_run_dir,
    offline_system_parameters,
    run_identity,
)
from og_marl_omsd.upstream.og_marl_systems import register_configs as register_og_marl_system_configs

# The config store's nodes a run composes with (the run schema: og_marl_run, on import).
register_system_defaults()  # system_defaults/score_regularised: the constructor defaults (systems/defaults.py)
register_og_marl_system_configs()  # system=iddpg_bc etc.: OG-MARL's systems, configs from their YAML defaults


def configured_system_parameters(cfg: DictConfig, system_class: type) -> Dict[str, Any]:
    """``system.*`` checked by :func:`system_parameters` and written back normalised into ``cfg``
    (``critic_steps=1e6`` becomes ``1000000``), so one run has one directory and one config.
    An env preset's keys that this system does not take (``beta`` for BC) are left out of both."""
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
    check_run_settings(cfg)
    scale_budgets(cfg)
    try:
        system_class = registry.load_system(cfg.system.name)
    except registry.UnknownSystemError as error:
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
    require_generated(vault_config, location, dataset, cfg.vault_dir, cfg.task.name)  # big sets: exit 2 + command
    check_writable_directory(cfg.vault_dir, "vault directory", "vault_dir")
    try:
        ensure_datasets(cfg.task.vault_config, [dataset], cfg.vault_dir)
    except OSError as error:
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

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            progress.set_heartbeat(None)  # this run's wall-time record ends with it
            while _HELD_LOCKS:
                _HELD_LOCKS.pop().close()

    return wrapper
