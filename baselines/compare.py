"""Side-by-side comparison on MaMuJoCo: systems x datasets x seeds x a beta grid.

    python baselines/compare.py --out results/compare                 # the full comparison
    python baselines/compare.py --smoke --out /tmp/smoke              # every output in minutes
    python baselines/compare.py --out DIR --launcher joblib --jobs 2  # 2 runs at a time
    python baselines/compare.py --out DIR --launcher submitit_local   # the cluster path on this machine
    python baselines/compare.py --out DIR --report-only               # outputs of the runs finished so far

Every job is an ordinary run of ``python -m og_marl_omsd.run`` (same runner, vaults,
evaluation and outputs as a single run), launched as hydra multiruns through hydra's
launchers (``basic``, ``joblib``, ``submitit_local``, ``submitit_slurm``). Pretrained critics and behaviour
models are shared through the runner's cache (``DIR/pretrained``): the joint critic across
OMSD, BRPO-FAC and BRPO-JAL, the independent behaviour models across BRPO-Ind and BRPO-FAC,
and every pretrained part across the beta grid. Started again, the comparison skips the
runs that finished. The protocol (README, "Comparison protocol"): beta is chosen per
algorithm and dataset by the best mean final return over the first ``--select-seeds`` seeds
(3), each with its own pretrained parts; the other seeds (up to ``--seeds``, 5) run at the
chosen beta; BRPO-FAC's A/A twin (``--aa-system``: only the behaviour models' seed changed)
runs on every seed at FAC's chosen beta and gives the noise floor printed beside the table.

Writes to DIR: ``comparison.json`` (these settings), ``runs/`` (every run, with its
resolved config), ``logs/``, ``records.json``, ``marl_eval/{chosen,beta_grid}/``,
``table.md`` (with the A/A floor), ``aa_floor.json``, ``learning_curves.png``, ``beta.png``, ``aggregate.png`` and
``aggregate.json`` (rliable: IQM and probability of improvement on Random/Expert-normalised
returns).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

DATASETS = ("Random", "Medium-Replay", "Medium", "Expert")
SYSTEMS = ("omsd", "brpo_fac", "brpo_ind", "brpo_jal", "bc")
BETAS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
SMOKE: Dict[str, Any] = {  # every output, on the quick vault, in minutes
    "task_overrides": ["task.vault_config=2halfcheetah-quick"],
    "systems": ("omsd", "brpo_fac", "brpo_ind", "bc"),
    "datasets": ("Medium", "Expert"),
    "seeds": 2,
    "select_seeds": 1,
    "betas": (0.01, 0.1),
    "mode_seeking": (),
    "training_steps": 100,
    "evaluation_every": 50,
    "num_eval_episodes": 1,
    "critic_steps": 100,
    "behaviour_steps": 100,
    "system_settings": {"jit_compile": "false"},  # tiny budgets: XLA compilation would dominate
    "launcher": "joblib",
    "jobs": 2,  # when hydra's joblib launcher is installed
}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output directory (runs, cache, tables, figures)")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets on the quick vault: checks every output")
    parser.add_argument("--env", default="mamujoco")
    parser.add_argument("--task", default="2halfcheetah")
    parser.add_argument("--systems", nargs="+", default=None, help=f"default: {' '.join(SYSTEMS)}")
    parser.add_argument("--datasets", nargs="+", default=None, help=f"default: {' '.join(DATASETS)}")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 5)")
    parser.add_argument(
        "--select-seeds", type=int, default=None, help="seeds run at every beta; beta = best mean over them (default 3)"
    )
    parser.add_argument(
        "--aa-system",
        default=None,
        help="system whose A/A twin (only the behaviour models' seed changed) gives the noise floor\n"
        "(default brpo_fac when compared; 'none' for no floor)",
    )
    parser.add_argument("--betas", type=float, nargs="+", default=None, help=f"beta grid (default {BETAS})")
    parser.add_argument(
        "--mode-seeking",
        nargs="*",
        default=None,
        help="datasets also run with the mode-seeking noise range (default: Medium-Replay when compared;\n"
        "give the flag alone for none)",
    )
    for name, default in (
        ("training-steps", 20000),
        ("evaluation-every", 5000),
        ("num-eval-episodes", 5),
        ("critic-steps", 40000),
        ("behaviour-steps", 40000),
    ):
        parser.add_argument(f"--{name}", type=int, default=None, help=f"same for every system (default {default})")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="one more runner setting for every job (repeatable), e.g. replay.batch_size=512",
    )
    parser.add_argument(
        "--launcher",
        choices=("basic", "joblib", "submitit_local", "submitit_slurm"),
        default=None,
        help="hydra launcher (default basic; --smoke: joblib when installed); submitit_local: each run\n"
        "pickled and submitted through submitit as on SLURM, on this machine (job logs in DIR/logs/submitit)",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="parallel runs with --launcher joblib or submitit_local (--smoke: 2)"
    )
    parser.add_argument(
        "--launcher-arg",
        action="append",
        default=[],
        help="hydra launcher setting, e.g. hydra.launcher.partition=gpu (repeatable)",
    )
    parser.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' log lines and warnings")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="launch nothing: write the outputs of the runs finished so far (safe beside a running comparison)",
    )
    args = parser.parse_args(argv)
    explicit_mode_seeking = args.mode_seeking is not None
    preset = SMOKE if args.smoke else {}
    defaults: Dict[str, Any] = {
        "systems": SYSTEMS,
        "datasets": DATASETS,
        "seeds": 5,
        "aa_system": "brpo_fac",
        "betas": BETAS,
        "mode_seeking": ("Medium-Replay",),
        "training_steps": 20000,
        "evaluation_every": 5000,
        "num_eval_episodes": 5,
        "critic_steps": 40000,
        "behaviour_steps": 40000,
    }
    for key, default in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key, default))
    outside = [dataset for dataset in args.mode_seeking if dataset not in args.datasets]
    if outside and explicit_mode_seeking:
        parser.error(f"--mode-seeking {' '.join(outside)}: not among --datasets ({' '.join(args.datasets)})")
    args.mode_seeking = [dataset for dataset in args.mode_seeking if dataset in args.datasets]
    if args.select_seeds is None:
        args.select_seeds = preset.get("select_seeds", min(3, args.seeds))
    if args.aa_system == "none" or (args.aa_system == "brpo_fac" and "brpo_fac" not in args.systems):
        args.aa_system = None  # the default twin only when its system is compared
    if args.seeds >= 1 and not 1 <= args.select_seeds <= args.seeds:  # --seeds < 1: check_args says so
        parser.error(f"--select-seeds must be between 1 and --seeds ({args.seeds}), got {args.select_seeds}")
    if args.aa_system is not None and args.aa_system not in args.systems:
        parser.error(f"--aa-system {args.aa_system}: not among --systems ({' '.join(args.systems)})")
    args.task_overrides = list(preset.get("task_overrides", []))
    args.system_settings = dict(preset.get("system_settings", {}))
    if args.launcher is None:
        joblib = importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is not None
        args.launcher = preset["launcher"] if preset and joblib else "basic"
    if args.jobs is None:
        args.jobs = preset.get("jobs", 1) if args.launcher in ("joblib", "submitit_local") else 1
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    return args


def common_overrides(args: argparse.Namespace) -> List[str]:
    """Settings every job shares: the fair protocol's budgets, evaluation and outputs."""
    out = os.path.abspath(args.out)
    return [
        f"env={args.env}",
        f"task={args.task}",
        *args.task_overrides,
        f"training_steps={args.training_steps}",
        f"evaluation_every={args.evaluation_every}",
        f"num_eval_episodes={args.num_eval_episodes}",
        f"runs_root={out}/runs",
        f"pretrained_dir={out}/pretrained",
        *args.override,
    ]


def check_args(args: argparse.Namespace) -> None:
    """The settings every job would fail on, checked before anything is written or launched.

    Raises:
        UserError: one paragraph naming every bad setting (seeds, betas, systems, datasets,
            the output directory), or the first job whose settings the runner refuses (a bad
            ``--override``, a budget out of range, ...).
    """
    from og_marl_omsd.runner.registry import available_systems
    from og_marl_omsd.runner.validation import check_writable_directory
    from og_marl_omsd.support.errors import UserError

    problems = []
    if args.seeds < 1:
        problems.append(f"--seeds must be >= 1 (got {args.seeds})")
    bad_betas = [beta for beta in args.betas if not 0 < beta <= 3.4e38]  # NaN fails too
    if bad_betas:
        problems.append(f"--betas must be finite numbers > 0 (got {' '.join(f'{b:g}' for b in bad_betas)})")
    known = available_systems()
    unknown = [system for system in args.systems if system not in known]
    if unknown:
        problems.append(f"--systems: unknown {', '.join(unknown)} (registered: {', '.join(sorted(known))})")
    if problems:
        raise UserError("Bad comparison settings: " + "; ".join(problems) + ". Nothing was written.")
    check_writable_directory(args.out, "comparison output directory", "--out")
    _check_datasets(args)


def _composed(overrides: Sequence[str], what: str) -> Any:
    """The runner's config for ``overrides``; hydra's composition errors as a :class:`UserError`."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from og_marl_omsd.comparison.jobs import compose
    from og_marl_omsd.support.errors import UserError

    try:
        return compose(overrides)
    except (HydraException, OmegaConfBaseException) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(
            f"Bad settings for {what} ({' '.join(overrides)}): {reason}. Check --env, --task and every --override "
            "(runner settings as key=value, e.g. replay.batch_size=512). Nothing was written."
        ) from None


def _check_datasets(args: argparse.Namespace) -> None:
    """Every dataset of ``--datasets`` is defined by the task's vault config or on disk."""
    from og_marl_omsd.datasets.generate import load_vault_config, location_of
    from og_marl_omsd.support.errors import UserError

    cfg = _composed([f"env={args.env}", f"task={args.task}", *args.task_overrides, *args.override], "the task")
    try:
        vault_config = load_vault_config(cfg.task.vault_config)
    except FileNotFoundError as error:
        raise UserError(f"Task {cfg.task.name} names vault config {cfg.task.vault_config!r}: {error}") from None
    location = location_of(vault_config, cfg.vault_dir)
    defined, on_disk = list(vault_config.get("datasets", {})), location.available()
    unknown = [name for name in args.datasets if name not in defined and name not in on_disk]
    if unknown:
        raise UserError(
            f"--datasets: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a dataset of task "
            f"{cfg.task.name} (vault config {vault_config['name']} defines {', '.join(defined) or 'none'}; on disk in "
            f"{location.path}: {', '.join(on_disk) or 'none'}). Nothing was launched or written."
        )


def check_jobs(jobs: Sequence[Any], common: Sequence[str]) -> None:
    """Each job's settings pass the runner's checks (composed and planned, nothing written)."""
    from og_marl_omsd.comparison import jobs as comparison_jobs
    from og_marl_omsd.support.errors import UserError

    for job in jobs:
        _composed([*common, *job.overrides()], f"job {job.system} {job.dataset}")
        try:
            comparison_jobs.run_dir(job, common)
        except UserError as error:
            raise UserError(
                f"Job {' '.join(job.overrides())} would fail: {error} (Its settings come from this command: fix the "
                "flag or --override that sets it. Nothing was launched or written.)"
            ) from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    from og_marl_omsd.comparison import jobs as comparison_jobs
    from og_marl_omsd.comparison import report
    from og_marl_omsd.support import quiet

    args = parse_args(argv)
    quiet.configure(args.verbose)
    check_args(args)
    run_phase = _report_phase if args.report_only else _run_phase
    comparison = comparison_jobs.Comparison(
        systems=args.systems,
        datasets=args.datasets,
        seeds=list(range(args.seeds)),
        betas=args.betas,
        variants={"mode_seeking": args.mode_seeking} if args.mode_seeking else {},
        select_seeds=args.select_seeds,
        aa_system=args.aa_system,
        system_settings={
            "critic_steps": args.critic_steps,
            "behaviour_steps": args.behaviour_steps,
            **args.system_settings,
        },
    )
    common = common_overrides(args)
    has_beta = {system: comparison_jobs.has_beta(system) for system in args.systems}.__getitem__
    select = comparison.select_jobs(has_beta)
    check_jobs(select, common)  # the seeds phase runs these settings with other seeds and the chosen beta
    os.makedirs(args.out, exist_ok=True)
    if not args.report_only:  # a report keeps the settings the comparison ran with
        with open(os.path.join(args.out, "comparison.json"), "w") as handle:
            settings = {k: v for k, v in vars(args).items()} | {"common_overrides": common}
            json.dump(settings, handle, indent=2, default=list)
    run_phase(f"select (first {args.select_seeds} seed(s), every beta)", select, common, args)
    records, failures = _collect(select, common, args)
    choices = report.select_beta(records)
    by_algorithm = {(algorithm, dataset): beta for (algorithm, _, _, dataset), beta in choices.items()}
    seeds = comparison.seed_jobs(
        has_beta,
        lambda system, variant, dataset: by_algorithm.get(
            (report.algorithm_name({"system": system, "variant": variant}), dataset)
        ),
    )
    run_phase("seeds (other seeds and the A/A twin, chosen beta)", seeds, common, args)
    more, more_failures = _collect(seeds, common, args)
    records += more
    report.fill_dataset_means(records)  # OG-MARL's systems record none
    failures += more_failures
    _write_outputs(records, choices, args)
    if failures:
        print(f"[compare] {len(failures)} run(s) did not finish (see {os.path.join(args.out, 'logs')}):", flush=True)
        for job in failures:
            print(f"  {job}", flush=True)
        return 0 if args.report_only else 1
    return 0


def _run_phase(name: str, jobs: Sequence[Any], common: Sequence[str], args: argparse.Namespace) -> None:
    from og_marl_omsd.comparison import jobs as comparison_jobs

    directories = {job: comparison_jobs.run_dir(job, common) for job in jobs}
    stale = _other_data(jobs, common, args)
    pending = [job for job in jobs if not comparison_jobs.is_finished(directories[job])]
    print(
        f"[compare] phase {name}: {len(jobs)} runs, {len(jobs) - len(pending) - len(stale)} already finished"
        + (f", {len(stale)} finished on other data (not reused)" if stale else ""),
        flush=True,
    )
    _report_other_data(stale)
    with comparison_jobs.Progress(
        {job: d for job, d in directories.items() if job not in stale}, every=args.progress_every
    ):
        for block in comparison_jobs.blocks(pending):
            first = block[0]
            label = "-".join(dict.fromkeys(job.system for job in block)) + (
                f"-{first.variant}" if first.variant else ""
            )
            log = os.path.join(args.out, "logs", f"{label}.log")
            code = comparison_jobs.launch(block, common, args.launcher, args.jobs, log, args.launcher_arg)
            if code != 0:
                print(f"[compare] a sweep exited with code {code}: see {log}", flush=True)


def _report_phase(name: str, jobs: Sequence[Any], common: Sequence[str], args: argparse.Namespace) -> None:
    from og_marl_omsd.comparison import jobs as comparison_jobs

    stale = _other_data(jobs, common, args)
    done = sum(comparison_jobs.is_finished(comparison_jobs.run_dir(job, common)) for job in jobs) - len(stale)
    print(f"[compare] phase {name}: {done}/{len(jobs)} runs finished (--report-only: nothing launched)", flush=True)
    _report_other_data(stale)


def _other_data(jobs: Sequence[Any], common: Sequence[str], args: argparse.Namespace) -> Dict[Any, str]:
    """The finished runs that were made from other data than their dataset now on disk:
    ``{job: why}`` (never reused: not counted, not collected, not launched again)."""
    from og_marl_omsd.comparison import jobs as comparison_jobs

    location = _task_location(args)
    stale = {}
    for job in jobs:
        reason = comparison_jobs.other_data(comparison_jobs.run_dir(job, common), location, job.dataset)
        if reason is not None:
            stale[job] = reason
    return stale


def _report_other_data(stale: Mapping[Any, str]) -> None:
    if not stale:
        return
    print(
        f"[compare] {len(stale)} finished run(s) were made from other data than the dataset now on disk; their "
        "results are not reused and they are not run again here (the runner refuses a run directory made from "
        "other data). Move their run directories aside (or use another --out) to run them on the new data:",
        flush=True,
    )
    for job, reason in stale.items():
        print(f"  {job}: {reason}", flush=True)


def _collect(
    jobs: Sequence[Any], common: Sequence[str], args: argparse.Namespace
) -> Tuple[List[Dict[str, Any]], List[Any]]:
    from og_marl_omsd.comparison import jobs as comparison_jobs
    from og_marl_omsd.comparison.report import record_from_results

    records, failures = [], []
    stale = _other_data(jobs, common, args)
    for job in jobs:
        directory = comparison_jobs.run_dir(job, common)
        if not comparison_jobs.is_finished(directory) or job in stale:
            failures.append(job)
            continue
        with open(os.path.join(directory, "results.json")) as handle:
            results = json.load(handle)
        records.append(record_from_results(results, job.beta, job.variant, run_dir=directory))
    return records, failures


def _task_location(args: argparse.Namespace) -> Any:
    from og_marl_omsd.comparison.jobs import compose
    from og_marl_omsd.datasets.generate import load_vault_config, location_of

    cfg = compose([f"env={args.env}", f"task={args.task}", *args.task_overrides, *args.override])
    return location_of(load_vault_config(cfg.task.vault_config), cfg.vault_dir)


def _add_ood(records: Sequence[Dict[str, Any]], args: argparse.Namespace) -> None:
    """Each record's OOD share: its policy's joint actions at held-out dataset states
    (og_marl_omsd.comparison.ood; one support estimate per dataset)."""
    from og_marl_omsd.comparison.ood import dataset_support, run_ood_share
    from og_marl_omsd.datasets.vaults import read_dataset

    location, supports = _task_location(args), {}
    for record in records:
        if record["dataset"] not in supports:
            supports[record["dataset"]] = dataset_support(read_dataset(location, record["dataset"]))
        record["ood_share"] = run_ood_share(record["run_dir"], supports[record["dataset"]])


def _normalisers(
    records: Sequence[Dict[str, Any]], args: argparse.Namespace
) -> Dict[Tuple[str, str], Tuple[float, float]]:
    """The Random and Expert datasets' mean returns of the task (read from its vault)."""
    from og_marl_omsd.comparison.jobs import compose
    from og_marl_omsd.datasets.vaults import episode_returns, read_dataset
    from og_marl_omsd.runner.run import prepare_dataset
    from og_marl_omsd.support.errors import UserError

    cfg = compose([f"env={args.env}", f"task={args.task}", *args.task_overrides, *args.override])
    means = {}
    for name in ("Random", "Expert"):
        try:  # generated first where its vault config allows (the quick config does)
            location = prepare_dataset(cfg, name)
        except UserError as error:
            print(f"[compare] no {name} dataset to normalise by: {error}", flush=True)
            return {}
        means[name] = float(episode_returns(read_dataset(location, name)).mean())
    return {(args.env, args.task): (means["Random"], means["Expert"])}


def _write_outputs(records: List[Dict[str, Any]], choices: Dict[Any, Any], args: argparse.Namespace) -> None:
    from og_marl_omsd.comparison import plots, report

    out = args.out
    _add_ood(records, args)
    with open(os.path.join(out, "records.json"), "w") as handle:
        json.dump(records, handle, indent=2)
    if not records:
        print("[compare] no finished runs: nothing to report", flush=True)
        return
    report.write_marl_eval(records, choices, os.path.join(out, "marl_eval"))
    floor = report.aa_floor(records, choices)
    with open(os.path.join(out, "aa_floor.json"), "w") as handle:
        json.dump(floor, handle, indent=2)
    table = report.format_table(report.summary_rows(records, choices))
    if floor:
        table += "\n" + report.format_aa_floor(floor)
    with open(os.path.join(out, "table.md"), "w") as handle:
        handle.write(table)
    plots.plot_learning_curves(records, choices, os.path.join(out, "learning_curves.png"))
    plots.plot_beta(records, os.path.join(out, "beta.png"))
    normalisers = _normalisers(records, args)
    if normalisers:
        aggregate = plots.aggregate_scores(records, choices, normalisers)
        with open(os.path.join(out, "aggregate.json"), "w") as handle:
            json.dump(aggregate, handle, indent=2)
        plots.plot_aggregate(aggregate, os.path.join(out, "aggregate.png"))
    else:
        print("[compare] aggregate.png skipped: the task's Random and Expert datasets are not on disk", flush=True)
    print(table, flush=True)
    print(f"[compare] outputs in {out}", flush=True)


INTERRUPTED = "Interrupted. Run the same command again: finished runs are kept and not run again."


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """:func:`main` with bad input as one paragraph (exit 2) and Ctrl-C as one line (exit 130);
    ``HYDRA_FULL_ERROR=1`` shows the traceback."""
    from og_marl_omsd.support.errors import cli_entry

    return cli_entry(lambda: main(argv), INTERRUPTED)


if __name__ == "__main__":
    sys.exit(cli())
