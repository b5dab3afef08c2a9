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

import errno
import os
import sys
import time
import traceback
from typing import Any, Dict, Optional, Tuple

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from og_marl_omsd.runner import steps, sweep
from og_marl_omsd.runner.devices import setup_devices
from og_marl_omsd.runner.plan import (  # noqa: F401 (re-exported: the runner's names, as callers know them)
    _lock_run_dir,
    _releases_run_lock,
    check_same_run,
    configured_system_parameters,
    dataset_source,
    plan_run,
    prepare_dataset,
    reward_scale,
    vault_of_task,
)
from og_marl_omsd.support import quiet
from og_marl_omsd.support.errors import StageStopped, UserError, cli_entry
from og_marl_omsd.support.files import is_disk_error, write_json
from og_marl_omsd.support.provenance import collect
from og_marl_omsd.upstream.og_marl_run import (  # noqa: F401 (re-exported: defined there, shared with og_marl/run.py)
    NOT_RUN_IDENTITY,
    RunSchema,
    check_run_settings,
    default_run_dir,
    print_summary,
    run_identity,
    run_offline_system,
    run_results,
    system_parameters,
)


@_releases_run_lock
def run(cfg: DictConfig) -> Dict[str, Any]:
    """Run one configured experiment (or resume it); returns the results written to ``results.json``.

    The steps are :mod:`og_marl_omsd.runner.steps` (its docstring shows the sequence)."""
    start = time.time()
    setup_devices()  # before anything (a system's import, a dataset's generation) starts TF or JAX
    plan = steps.prepare_run(cfg)
    if not plan.pretrains:  # OG-MARL's own systems: no pretraining stage
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


INTERRUPTED = "Interrupted. Run the same command again to resume from the last checkpoint."


def failure_report(error: BaseException) -> Optional[Tuple[int, str]]:
    """``(exit code, one paragraph)`` for an error the user can act on, ``None`` for a bug."""
    if isinstance(error, UserError):
        return 2, f"Error: {error}"
    if isinstance(error, StageStopped):
        return 3, f"Stopped: {error}"
    if is_disk_error(error):
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
    sweep.task_started()
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
            traceback.print_exc()
            report = (1, f"Failed: {type(error).__name__}: {error}")
        code, message = report
        print(message, file=sys.stderr, flush=True)
        if not multirun or hydra_config is None:
            sys.exit(code)
        sweep.record_failure(hydra_config.job.num, " ".join(hydra_config.overrides.task), code, message)


def cli() -> None:
    """``python -m og_marl_omsd.run``: Hydra's own errors (a bad override, a wrong type, ...) exit with 2
    like every other input error; Ctrl-C prints one line (:func:`~og_marl_omsd.support.errors.cli_entry`)."""

    def hydra_main() -> None:
        try:
            main()
        except SystemExit as exit_:
            if exit_.code == 1 and not sweep.has_task_started():
                sys.exit(2)
            raise

    sys.exit(cli_entry(hydra_main, INTERRUPTED))


if __name__ == "__main__":
    cli()
