"""The comparison's jobs: the grid, the runs it needs, and their launch through the runner.

A comparison is systems x variants x datasets x seeds x a beta grid. Every job is one
ordinary run of ``python -m og_marl_omsd.run`` (its run directory is the runner's
:func:`~og_marl_omsd.runner.run.default_run_dir`, so a finished job is found again and never run
twice). Jobs run as hydra multiruns, one per block of jobs that differ only in seed and
beta, through hydra's launchers: ``basic`` (one after another), ``joblib`` (N at a time on
this machine, each with its share of the cores), ``submitit_slurm`` (a cluster) or
``submitit_local`` (the cluster path on this machine: each job pickled, submitted as its own
process through submitit and its result collected as on SLURM; N at a time).

Beta is chosen in two phases (README, "Comparison protocol"): phase ``select`` runs the
first ``select_seeds`` seeds at every beta of the grid; phase ``seeds`` runs the other seeds
at the beta that :func:`~og_marl_omsd.comparison.report.select_beta` picked (the best mean
final return over the selection seeds). Phase ``seeds`` also runs the **A/A twin** of one
system (``aa_system``, BRPO-FAC by default): the same system at its chosen beta on every
seed with only the behaviour models' seed changed (variant ``aa``), whose difference from
the system itself is the comparison's noise floor
(:func:`~og_marl_omsd.comparison.report.aa_floor`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

AA_VARIANT = "aa"
# Variants of the score-regularised systems other than beta (README, Algorithm notes: noise-level range).
VARIANTS: Dict[str, List[str]] = {
    "": [],
    "mode_seeking": ["system.t_min=0.02", "system.t_max=0.1", "system.score_weight=one"],
    AA_VARIANT: [],  # the A/A twin: its own behaviour seed per run seed (aa_settings)
}
AA_SEED_OFFSET = 1000  # the twin of seed s trains its behaviour models with seed s + 1000


@dataclass(frozen=True)
class Job:
    system: str
    dataset: str
    seed: int
    beta: Optional[float] = None
    variant: str = ""
    settings: Tuple[str, ...] = ()  # the shared system settings this system takes

    def overrides(self) -> List[str]:
        """The job's own command-line settings (the comparison's shared ones come on top)."""
        own = [f"system={self.system}", f"dataset={self.dataset}", f"seed={self.seed}"]
        if self.beta is not None:
            own.append(f"system.beta={self.beta:g}")
        return own + VARIANTS[self.variant] + list(self.settings)


@dataclass
class Comparison:
    """What to compare and how; ``common`` holds the settings every job shares (env, task,
    budgets, batch, evaluation, output directories)."""

    systems: Sequence[str]
    datasets: Sequence[str]
    seeds: Sequence[int]
    betas: Sequence[float]
    variants: Mapping[str, Sequence[str]] = field(default_factory=dict)  # variant -> its datasets
    system_settings: Mapping[str, Any] = field(default_factory=dict)  # e.g. budgets, for every system that takes them
    select_seeds: int = 1  # seeds run at every beta; beta = the best mean final return over them
    aa_system: Optional[str] = None  # the system whose A/A twin runs beside it (None: no noise floor)

    def __post_init__(self) -> None:
        if not 1 <= self.select_seeds <= len(self.seeds):
            raise ValueError(
                f"select_seeds must be between 1 and the {len(self.seeds)} seeds, got {self.select_seeds}."
            )
        if self.aa_system is not None and self.aa_system not in self.systems:
            raise ValueError(f"The A/A system {self.aa_system} is not among the systems {list(self.systems)}.")
        if AA_VARIANT in self.variants:
            raise ValueError(f"Variant {AA_VARIANT!r} is the A/A twin: ask for it with aa_system.")
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown:
            raise ValueError(f"Unknown variant(s) {', '.join(unknown)}; known: {', '.join(v for v in VARIANTS if v)}.")
        if not self.seeds or not self.datasets or not self.systems:
            raise ValueError("A comparison needs at least one system, dataset and seed.")

    def settings(self, system: str) -> Tuple[str, ...]:
        """``system.<name>=<value>`` for each shared system setting that ``system`` takes (the
        critic budget means nothing to BC, but every system that has a critic gets the same)."""
        if not self.system_settings:
            return ()
        accepted = parameters(system)
        return tuple(
            f"system.{name}={value}" for name, value in sorted(self.system_settings.items()) if name in accepted
        )

    def algorithms(self, has_beta: Callable[[str], bool]) -> List[Tuple[str, str, Sequence[str]]]:
        """(system, variant, datasets): every system on every dataset, plus each variant of
        the systems that have beta on its datasets."""
        entries = [(system, "", self.datasets) for system in self.systems]
        for variant, datasets in self.variants.items():
            entries += [(system, variant, datasets) for system in self.systems if has_beta(system)]
        return entries

    def select_jobs(self, has_beta: Callable[[str], bool]) -> List[Job]:
        """Phase ``select``: the first ``select_seeds`` seeds at every beta (systems without
        beta: those seeds)."""
        jobs = []
        for system, variant, datasets in self.algorithms(has_beta):
            for dataset in datasets:
                for beta in self.betas if has_beta(system) else [None]:
                    for seed in self.seeds[: self.select_seeds]:
                        jobs.append(Job(system, dataset, seed, beta, variant, self.settings(system)))
        return jobs

    def seed_jobs(
        self, has_beta: Callable[[str], bool], chosen_beta: Callable[[str, str, str], Optional[float]]
    ) -> List[Job]:
        """Phase ``seeds``: the other seeds at each algorithm's and dataset's chosen beta, and
        the A/A twin of ``aa_system`` at that system's chosen beta on every seed."""
        jobs = []
        for system, variant, datasets in self.algorithms(has_beta):
            for dataset in datasets:
                beta = chosen_beta(system, variant, dataset) if has_beta(system) else None
                if has_beta(system) and beta is None:
                    continue  # its selection seeds failed at every beta: nothing to choose from
                rest = self.seeds[self.select_seeds :]
                jobs += [Job(system, dataset, seed, beta, variant, self.settings(system)) for seed in rest]
        if self.aa_system is not None and has_beta(self.aa_system):
            for dataset in self.datasets:
                beta = chosen_beta(self.aa_system, "", dataset)
                if beta is not None:
                    settings = self.settings(self.aa_system)
                    jobs += [
                        Job(self.aa_system, dataset, seed, beta, AA_VARIANT, settings + aa_settings(seed))
                        for seed in self.seeds
                    ]
        return jobs


def aa_settings(seed: int) -> Tuple[str, ...]:
    """The A/A twin's one difference from its system's run of ``seed``: the behaviour models'
    seed (a different one for every run seed, never equal to a run seed in use)."""
    return (f"system.behaviour_seed={AA_SEED_OFFSET + seed}",)


def parameters(system: str) -> List[str]:
    """The hyperparameters a registered system's constructor takes."""
    from og_marl_omsd.runner.registry import load_system

    return list(inspect.signature(load_system(system).__init__).parameters)  # type: ignore[misc]


def has_beta(system: str) -> bool:
    """Whether a registered system takes ``beta`` (the score-regularised ones do)."""
    return "beta" in parameters(system)


def compose(overrides: Sequence[str], hydra_node: bool = False) -> Any:
    """The runner's config for ``overrides``, composed as ``python -m og_marl_omsd.run`` does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    import og_marl_omsd.runner.run  # noqa: F401  (registers the run schema)

    with initialize_config_module(config_module="og_marl_omsd.configs", version_base=None):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_node)


def run_dir(job: Job, common: Sequence[str]) -> str:
    """Where the runner puts (and finds) this job's run (composed once per job and
    common overrides: a comparison asks again when it collects)."""
    return _run_dir(job, tuple(common))


@functools.lru_cache(maxsize=None)
def _run_dir(job: Job, common: Tuple[str, ...]) -> str:
    from og_marl_omsd.runner.run import plan_run

    with contextlib.redirect_stdout(io.StringIO()):  # the run prints its notes when it runs, not here
        return plan_run(compose([*common, *job.overrides()]))[3]


def is_finished(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, "results.json"))


def other_data(directory: str, location: Any, dataset: str) -> Optional[str]:
    """Why the finished run in ``directory`` was not made from dataset ``dataset`` as it is at
    ``location`` now (the runner's rule, :mod:`og_marl_omsd.datasets.record`), or ``None``
    when it was, when it is not finished, or when the dataset is not on disk (the run's job
    then generates it and the runner checks). A changed dataset is read once per process;
    an unchanged one costs a ``stat`` per file."""
    from og_marl_omsd.datasets import record as data_record
    from og_marl_omsd.support.errors import UserError

    if not is_finished(directory) or not location.exists(dataset):
        return None
    recorded = data_record.read_record(directory)
    if recorded is None:  # made before runs recorded their dataset: nothing to compare with
        return None
    try:
        current, _ = data_record.current_fingerprint(location, dataset, recorded)
    except UserError as error:
        return str(error)
    if current == recorded["fingerprint"]:
        return None
    return (
        f"made from data with fingerprint {recorded['fingerprint']}; {location.dataset_path(dataset)} now holds "
        f"{current}"
    )


def blocks(jobs: Sequence[Job]) -> List[List[Job]]:
    """Jobs grouped into as few hydra sweeps as possible; each sweep is a product
    ``systems x datasets x seeds x betas`` of jobs that share variant and settings (a sweep
    runs its jobs in parallel under the joblib launcher)."""
    grouped: Dict[Tuple[str, Tuple[str, ...], bool], List[Job]] = {}
    for job in jobs:
        grouped.setdefault((job.variant, job.settings, job.beta is None), []).append(job)
    result: List[List[Job]] = []
    for members in grouped.values():
        # Jobs that share everything but beta become one beta list; equal lists, one sweep.
        by_point: Dict[Tuple[str, str, int], List[Optional[float]]] = {}
        for job in members:
            by_point.setdefault((job.system, job.dataset, job.seed), []).append(job.beta)
        by_betas: Dict[Tuple[Optional[float], ...], List[Tuple[str, str, int]]] = {}
        for point, betas in by_point.items():
            by_betas.setdefault(tuple(sorted(betas, key=lambda b: -1.0 if b is None else b)), []).append(point)
        for beta_values, points in by_betas.items():
            for product in _products(points):
                result.append(
                    [
                        Job(system, dataset, seed, beta, members[0].variant, members[0].settings)
                        for system, dataset, seed in product
                        for beta in beta_values
                    ]
                )
    return result


def _products(points: Sequence[Tuple[str, str, int]]) -> List[List[Tuple[str, str, int]]]:
    """Split (system, dataset, seed) points into full products: the whole set when it is one,
    else by system, then by (system, dataset)."""

    def is_product(subset: Sequence[Tuple[str, str, int]]) -> bool:
        systems, datasets, seeds = ({point[i] for point in subset} for i in range(3))
        return len(set(subset)) == len(systems) * len(datasets) * len(seeds)

    if is_product(points):
        return [list(points)]
    parts: List[List[Tuple[str, str, int]]] = []
    for system in dict.fromkeys(point[0] for point in points):
        mine = [point for point in points if point[0] == system]
        if is_product(mine):
            parts.append(mine)
        else:
            for dataset in dict.fromkeys(point[1] for point in mine):
                parts.append([point for point in mine if point[1] == dataset])  # one dataset: seeds alone
    return parts


# submitit_local stops a job after hydra's default of 60 minutes; a comparison's run may take longer.
LOCAL_TIMEOUT_MIN = 7 * 24 * 60


def sweep_command(
    block: Sequence[Job],
    common: Sequence[str],
    launcher: str,
    jobs: int,
    launcher_overrides: Sequence[str] = (),
    logs_dir: Optional[str] = None,
) -> List[str]:
    """``python -m og_marl_omsd.run -m ...`` for one block, through ``hydra/launcher=<launcher>``.

    ``submitit_local`` runs ``jobs`` at a time (hydra's sweeper hands the launcher batches of
    that size) with a timeout of :data:`LOCAL_TIMEOUT_MIN`; the submitit launchers keep their
    job folders (pickles, each job's stdout and stderr) under ``logs_dir/submitit`` when given.
    A setting in ``launcher_overrides`` replaces the one chosen here."""
    first = block[0]

    def values(name: str) -> str:
        return ",".join(str(value) for value in dict.fromkeys(getattr(job, name) for job in block))

    command = [
        sys.executable,
        "-m",
        "og_marl_omsd.run",
        "-m",
        f"system={values('system')}",
        f"dataset={values('dataset')}",
        f"seed={values('seed')}",
        *VARIANTS[first.variant],
        *first.settings,
        *common,
    ]
    betas = sorted({job.beta for job in block if job.beta is not None})
    if betas:
        command.append("system.beta=" + ",".join(f"{beta:g}" for beta in betas))
    if launcher != "basic":
        command.append(f"hydra/launcher={launcher}")
    chosen = []
    if launcher == "joblib":
        chosen.append(f"hydra.launcher.n_jobs={jobs}")
    if launcher == "submitit_local":
        chosen += [f"hydra.sweeper.max_batch_size={jobs}", f"hydra.launcher.timeout_min={LOCAL_TIMEOUT_MIN}"]
    if launcher.startswith("submitit_") and logs_dir is not None:
        chosen.append(f"hydra.launcher.submitit_folder={os.path.abspath(logs_dir)}/submitit/%j")
    given = {_override_key(override) for override in launcher_overrides}
    return command + [setting for setting in chosen if _override_key(setting) not in given] + list(launcher_overrides)


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def parallel_jobs(launcher: str, jobs: int) -> int:
    """How many runs a launcher runs at a time on this machine (``--jobs`` for the local ones)."""
    return jobs if launcher in ("joblib", "submitit_local") else 1


def threads_per_job(jobs: int, cores: Optional[int] = None) -> int:
    """Each of ``jobs`` parallel jobs gets an equal share of the cores (at least one)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


class Progress:
    """Periodic plain lines for the whole comparison: runs done of all, elapsed, ETA."""

    def __init__(self, directories: Mapping[Job, str], every: float = 30.0, print_fn: Callable[[str], None] = print):
        self.directories = dict(directories)
        self.every = every
        self.print_fn = print_fn
        self.start = time.time()
        self.done_at_start = self.count()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._last = -1

    def count(self) -> int:
        return sum(is_finished(directory) for directory in self.directories.values())

    def line(self) -> str:
        done, total = self.count(), len(self.directories)
        elapsed = time.time() - self.start
        new = done - self.done_at_start
        eta = "unknown" if new == 0 else _seconds((total - done) * elapsed / new)
        return f"[compare] {done}/{total} runs done | elapsed {_seconds(elapsed)} | ETA {eta}"

    def report(self, force: bool = False) -> None:
        done = self.count()
        if force or done != self._last:
            self._last = done
            self.print_fn(self.line())

    def __enter__(self) -> "Progress":
        def loop() -> None:
            while not self._stop.wait(self.every):
                self.report()

        self.report(force=True)
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.report(force=True)


def _seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def launch(
    block: Sequence[Job],
    common: Sequence[str],
    launcher: str,
    jobs: int,
    log_path: str,
    launcher_overrides: Sequence[str] = (),
) -> int:
    """Run one block's sweep; its output goes to ``log_path``. Returns the exit code."""
    environment = dict(os.environ)
    threads = threads_per_job(parallel_jobs(launcher, jobs))
    environment.update(
        {
            "TF_NUM_INTRAOP_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": "1",
            "OMP_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1",
        }
    )
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    command = sweep_command(block, common, launcher, jobs, launcher_overrides, os.path.dirname(log_path))
    with open(log_path, "a") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        return subprocess.run(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            check=False,
        ).returncode
