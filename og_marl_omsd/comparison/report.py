"""A comparison's results: beta selection, the table, marl-eval JSON and the figures.

Everything here works on *records*, one per finished run::

    {"system": "omsd", "variant": "", "env": "mamujoco", "task": "2halfcheetah",
     "dataset": "Medium", "seed": 0, "beta": 0.01,          # beta None: no beta to choose
     "final_return": 2310.5, "curve": [[5000, 1800.2], ...], # (training step, mean return)
     "dataset_mean": 2566.1, "ood_share": 0.03}             # ood_share optional

``variant`` tells apart configurations of one system other than beta (for example
``mode_seeking``); a system plus its variant is one *algorithm* (:func:`algorithm_name`).

Protocol (README, "Comparison protocol"): for every algorithm and dataset, beta is chosen
by :func:`select_beta` (the best mean final return over the selection seeds, ties to the
smaller beta); the A/A twin of one system gives the noise floor (:func:`aa_floor`);
the table and the learning curves show the chosen beta's seeds; ``beta.png`` shows every
beta, so the sensitivity stays visible.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from og_marl_omsd.runner.naming import (  # noqa: F401 (split_algorithm_name: the comparison's readers import it from here)
    algorithm_name,
    marl_eval_task_name,
    split_algorithm_name,
    with_settings,
)

Record = Dict[str, Any]
Group = Tuple[str, str, str, str]  # (algorithm, env, task, dataset)
METRIC = "mean_episode_return"


def group_of(record: Mapping[str, Any]) -> Group:
    return (algorithm_name(record), str(record["env"]), str(record["task"]), str(record["dataset"]))


def record_from_results(
    results: Mapping[str, Any],
    beta: Optional[float],
    variant: str = "",
    ood_share: Optional[float] = None,
    run_dir: str = "",
) -> Record:
    """A record from a run's ``results.json`` (the runner's output)."""
    curve = [
        [int(point["training_steps"]), float(point[METRIC])]
        for point in results.get("evaluation_curve", [])
        if "training_steps" in point
    ]
    return {
        "system": results["system"],
        "variant": variant,
        "env": results["env"],
        "task": results["task"],
        "dataset": results["dataset"],
        "seed": int(results["seed"]),
        "beta": None if beta is None else float(beta),
        "final_return": float(results["final_evaluation"][METRIC]),
        "curve": curve,
        # OG-MARL's own systems' results carry no dataset statistics: see fill_dataset_means
        "dataset_mean": _dataset_mean(results),
        "ood_share": ood_share,
        "run_dir": run_dir,
    }


def _dataset_mean(results: Mapping[str, Any]) -> Optional[float]:
    statistics = results.get("dataset_statistics")
    return None if statistics is None else float(statistics["mean_return"])


def fill_dataset_means(records: Sequence[Record]) -> None:
    """Give records without a dataset mean (runs of OG-MARL's own systems) the mean that the
    other runs on the same env, task and dataset recorded (``None`` when none did)."""
    known = {
        (record["env"], record["task"], record["dataset"]): record["dataset_mean"]
        for record in records
        if record["dataset_mean"] is not None
    }
    for record in records:
        if record["dataset_mean"] is None:
            record["dataset_mean"] = known.get((record["env"], record["task"], record["dataset"]))


# ---------------------------------------------------------------------- beta selection
def select_beta(records: Iterable[Record]) -> Dict[Group, Optional[float]]:
    """The rule: per algorithm and dataset, the beta with the best mean final return over the
    seeds that ran at every beta of the grid (the selection seeds; every seed when no seed ran
    at all of them); a tie goes to the smaller beta (the more regularised policy). Algorithms
    without beta map to ``None``.

    Raises:
        ValueError: if one group mixes runs with and without beta.
    """
    by_group: Dict[Group, List[Record]] = defaultdict(list)
    for record in records:
        by_group[group_of(record)].append(record)
    choices: Dict[Group, Optional[float]] = {}
    for group, members in by_group.items():
        betas = {record["beta"] is None for record in members}
        if len(betas) > 1:
            raise ValueError(f"{group}: some runs have a beta and some do not.")
        if members[0]["beta"] is None:
            choices[group] = None
            continue
        seeds_of: Dict[float, set] = defaultdict(set)
        for record in members:
            seeds_of[float(record["beta"])].add(record["seed"])
        common = set.intersection(*seeds_of.values()) or set.union(*seeds_of.values())
        means = {}
        for beta in seeds_of:
            finals = [r["final_return"] for r in members if float(r["beta"]) == beta and r["seed"] in common]
            if finals:
                means[beta] = float(np.mean(finals))
        choices[group] = max(means, key=lambda beta: (means[beta], -beta))
    return choices


def aa_floor(records: Iterable[Record], choices: Mapping[Group, Optional[float]]) -> List[Dict[str, Any]]:
    """The noise floor per dataset: the A/A twin (variant ``aa``: the same system, beta, seeds,
    critic and actor batches, only the behaviour models' seed changed) against its system at
    the chosen beta, paired by seed. A difference between two algorithms that is not larger
    than this one's is not evidence of a difference.

    Returns:
        one row per (system, env, task, dataset) with an A/A twin: ``seeds`` (paired), ``diff``
        (mean of system - twin), its 95% bootstrap CI, ``abs_diff``, and ``spread`` (the std of
        the paired differences over seeds).
    """
    records = list(records)
    selected = chosen(records, choices)
    rows = []
    twins = [record for record in records if record.get("variant") == "aa"]
    for key in sorted({(r["system"], r["env"], r["task"], r["dataset"]) for r in twins}):
        system, env, task, dataset = key
        base = {
            r["seed"]: r["final_return"]
            for r in selected
            if (r["system"], r["env"], r["task"], r["dataset"]) == key and not r.get("variant")
        }
        beta = choices.get((system, env, task, dataset))
        twin = {
            r["seed"]: r["final_return"]
            for r in twins
            if (r["system"], r["env"], r["task"], r["dataset"]) == key
            and (beta is None or r["beta"] is None or math.isclose(r["beta"], beta))
        }
        seeds = sorted(set(base) & set(twin))
        if not seeds:
            continue
        differences = [base[seed] - twin[seed] for seed in seeds]
        low, high = bootstrap_ci(differences)
        rows.append(
            {
                "system": system,
                "env": env,
                "task": task,
                "dataset": dataset,
                "beta": beta,
                "seeds": len(seeds),
                "diff": float(np.mean(differences)),
                "abs_diff": float(abs(np.mean(differences))),
                "ci_low": low,
                "ci_high": high,
                "spread": float(np.std(differences)),
            }
        )
    return rows


def format_aa_floor(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: the A/A noise floor beside the table."""
    if not rows:
        return ""
    lines = [
        "A/A noise floor: the system against its twin with only the behaviour models' seed changed "
        "(same beta, seeds, critic, actor batches); paired over seeds.",
        "",
        "| dataset | system | beta | seeds | mean difference | 95% CI | std of differences |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        beta = "-" if row["beta"] is None else f"{row['beta']:g}"
        lines.append(
            f"| {row['task']}/{row['dataset']} | {row['system']} | {beta} | {row['seeds']} | {row['diff']:+.1f} | "
            f"[{row['ci_low']:.1f}, {row['ci_high']:.1f}] | {row['spread']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def chosen(records: Iterable[Record], choices: Mapping[Group, Optional[float]]) -> List[Record]:
    """The records of each group's chosen beta (all of them for groups without beta)."""

    def is_chosen(record: Record) -> bool:
        if group_of(record) not in choices:
            return False
        beta = choices[group_of(record)]
        return beta is None or math.isclose(record["beta"], beta)

    return [record for record in records if is_chosen(record)]


# ---------------------------------------------------------------------- statistics
def bootstrap_ci(
    values: Union[Sequence[float], np.ndarray], confidence: float = 0.95, reps: int = 10_000, seed: int = 0
) -> Tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (a single value: that value twice)."""
    array = np.asarray(values, np.float64)
    if array.size == 0:
        raise ValueError("No values to bootstrap.")
    if array.size == 1:
        return float(array[0]), float(array[0])
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, array.size, size=(reps, array.size))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def summary_rows(records: Iterable[Record], choices: Mapping[Group, Optional[float]]) -> List[Dict[str, Any]]:
    """One row per algorithm and dataset at the chosen beta: seeds, mean, std (over seeds,
    ddof=0), 95% bootstrap CI of the mean, the dataset's mean return, mean OOD share."""
    by_group: Dict[Group, List[Record]] = defaultdict(list)
    for record in chosen(records, choices):
        by_group[group_of(record)].append(record)
    rows = []
    for (algorithm, env, task, dataset), members in sorted(by_group.items()):
        finals = [record["final_return"] for record in sorted(members, key=lambda r: r["seed"])]
        shares = [record["ood_share"] for record in members if record.get("ood_share") is not None]
        low, high = bootstrap_ci(finals)
        rows.append(
            {
                "algorithm": algorithm,
                "env": env,
                "task": task,
                "dataset": dataset,
                "seeds": len(finals),
                "mean": float(np.mean(finals)),
                "std": float(np.std(finals)),
                "ci_low": low,
                "ci_high": high,
                "dataset_mean": members[0]["dataset_mean"],
                "beta": choices[(algorithm, env, task, dataset)],
                "ood_share": float(np.mean(shares)) if shares else None,
            }
        )
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: a row per dataset and algorithm (datasets in first-seen order)."""
    lines = [
        "| dataset | algorithm | final return (mean +- std) | 95% CI | seeds | dataset mean | beta | OOD share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    datasets = list(dict.fromkeys(f"{row['task']}/{row['dataset']}" for row in rows))
    for dataset in datasets:
        for row in (r for r in rows if f"{r['task']}/{r['dataset']}" == dataset):
            beta = "-" if row["beta"] is None else f"{row['beta']:g}"
            ood = "-" if row["ood_share"] is None else f"{100 * row['ood_share']:.1f}%"
            mean = "-" if row["dataset_mean"] is None else f"{row['dataset_mean']:.1f}"
            lines.append(
                f"| {dataset} | {row['algorithm']} | {row['mean']:.1f} +- {row['std']:.1f} | "
                f"[{row['ci_low']:.1f}, {row['ci_high']:.1f}] | {row['seeds']} | {mean} | "
                f"{beta} | {ood} |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- marl-eval JSON
def marl_eval_entry(record: Record) -> Dict[str, Any]:
    """One run as marl-eval's per-seed dict: ``step_i`` evaluations and ``absolute_metrics``."""
    entry: Dict[str, Any] = {
        f"step_{i}": {"step_count": int(step), METRIC: [float(value)]}
        for i, (step, value) in enumerate(record["curve"])
    }
    entry["absolute_metrics"] = {METRIC: [float(record["final_return"])]}
    return entry


def write_marl_eval(records: Iterable[Record], choices: Mapping[Group, Optional[float]], out_dir: str) -> List[str]:
    """marl-eval JSON trees that marl-eval's ``concatenate_json_files`` reads directly.

    ``<out_dir>/chosen/``: the chosen beta of each algorithm (algorithm name = system or
    system-variant); ``<out_dir>/beta_grid/``: every run, the algorithm name carrying its
    beta (``omsd@beta=0.01``). In both the task name carries the dataset
    (``2halfcheetah-Medium``), so two datasets never merge as extra seeds of one
    algorithm. One file per run; returns the paths written.
    """
    from og_marl_omsd.support.files import write_json

    records = list(records)
    selected = {id(record) for record in chosen(records, choices)}
    written = []
    for record in records:
        task = marl_eval_task_name(record["task"], record["dataset"])
        beta = {} if record["beta"] is None else {"beta": record["beta"]}
        trees = [("beta_grid", with_settings(algorithm_name(record), beta))]
        if id(record) in selected:
            trees.append(("chosen", algorithm_name(record)))
        for tree, algorithm in trees:
            payload = {record["env"]: {task: {algorithm: {f"seed_{record['seed']}": marl_eval_entry(record)}}}}
            path = os.path.join(out_dir, tree, record["env"], task, algorithm, f"seed_{record['seed']}.json")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_json(path, payload)
            written.append(path)
    return written


def merge_marl_eval(directory: str) -> Dict[str, Any]:
    """Every ``*.json`` below ``directory`` merged into one marl-eval dict (what marl-eval's
    concatenation does, minus its renumbering of clashing seeds, which is an error here).

    Raises:
        ValueError: if two files hold the same env/task/algorithm/seed.
    """
    merged: Dict[str, Any] = {}
    for root, _, files in sorted(os.walk(directory)):
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(root, name)) as handle:
                data = json.load(handle)
            for env, tasks in data.items():
                for task, algorithms in tasks.items():
                    for algorithm, seeds in algorithms.items():
                        target = merged.setdefault(env, {}).setdefault(task, {}).setdefault(algorithm, {})
                        for seed, entry in seeds.items():
                            if seed in target:
                                raise ValueError(f"{env}/{task}/{algorithm}/{seed} appears twice under {directory}.")
                            target[seed] = entry
    return merged


# ---------------------------------------------------------------------- normalised scores
def normalised(value: float, random_mean: float, expert_mean: float) -> float:
    """``(R - Random) / (Expert - Random)``: 0 at the Random dataset's mean, 1 at the Expert's."""
    if expert_mean == random_mean:
        raise ValueError("Random and Expert means are equal: cannot normalise.")
    return (value - random_mean) / (expert_mean - random_mean)


def score_matrices(
    records: Iterable[Record],
    choices: Mapping[Group, Optional[float]],
    normalisers: Mapping[Tuple[str, str], Tuple[float, float]],
) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """rliable's input: per algorithm a ``(seeds, datasets)`` matrix of normalised final
    returns, truncated to the seeds all share. The datasets are those of the algorithms
    that ran the most datasets (the ones all of them ran); an algorithm that ran fewer (a
    variant run on one dataset) is left out, rather than shrinking everyone's datasets."""
    table: Dict[str, Dict[str, Dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for record in chosen(records, choices):
        random_mean, expert_mean = normalisers[(record["env"], record["task"])]
        column = f"{record['task']}/{record['dataset']}"
        table[algorithm_name(record)][column][record["seed"]] = normalised(
            record["final_return"], random_mean, expert_mean
        )
    if table:
        widest = max(len(cols) for cols in table.values())
        columns = sorted(set.intersection(*(set(cols) for cols in table.values() if len(cols) == widest)))
        table = {name: cols for name, cols in table.items() if set(columns) <= set(cols)}
    else:
        columns = []
    seeds = (
        sorted(
            set.intersection(
                *(set(seeds) for cols in table.values() for name, seeds in cols.items() if name in columns)
            )
        )
        if columns
        else []
    )
    matrices = {
        algorithm: np.array([[cols[c][s] for c in columns] for s in seeds]) for algorithm, cols in table.items()
    }
    return matrices, columns
