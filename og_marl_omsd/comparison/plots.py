"""The comparison's figures: learning curves (the paper's Fig. 3), beta sensitivity and the
rliable aggregate (IQM and probability of improvement on normalised returns)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from og_marl_omsd.comparison.report import (
    Group,
    Record,
    algorithm_name,
    bootstrap_ci,
    chosen,
    score_matrices,
    split_algorithm_name,
)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# One colour per algorithm in every figure (matplotlib's tab10 order); others from a stable hash.
_COLOURS = {
    name: f"C{index}"
    for index, name in enumerate(("omsd", "brpo_fac", "brpo_ind", "brpo_jal", "bc", "iddpg_bc", "maddpg_cql", "omar"))
}


def colour(algorithm: str) -> str:
    """The algorithm's colour; a variant (``omsd-mode_seeking``) has its system's colour and
    a dashed line (:func:`line_style`)."""
    system = split_algorithm_name(algorithm)[0]
    if system in _COLOURS:
        return _COLOURS[system]
    return f"C{8 + sum(system.encode()) % 2}"


def line_style(algorithm: str) -> str:
    """Solid for a system, dashed for a variant of it."""
    return "--" if split_algorithm_name(algorithm)[1] else "-"


def legend_entries(axes: Sequence[Any]) -> Tuple[List[Any], List[str]]:
    """Every labelled line of every panel, once (a variant run on one dataset only is
    still in the legend)."""
    entries: Dict[str, Any] = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    labels = sorted(entries, key=lambda label: (label == "dataset mean", label))
    return [entries[label] for label in labels], labels


def _datasets(records: Sequence[Record]) -> List[Tuple[str, str]]:
    return list(dict.fromkeys((record["task"], record["dataset"]) for record in records))


def _dataset_panels(
    records: Sequence[Record],
    path: str,
    xlabel: str,
    ylabel: str,
    draw: Callable[[Any, List[Record]], None],
    log_x: bool = False,
) -> str:
    """One panel per dataset of ``records``: ``draw(axis, its records)``, the dataset's mean
    return dotted, titles, labels and one legend; saved to ``path``."""
    plt = _pyplot()
    datasets = _datasets(records) or [("", "")]
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for axis, (task, dataset) in zip(axes[0], datasets):
        members = [record for record in records if (record["task"], record["dataset"]) == (task, dataset)]
        draw(axis, members)
        if members and members[0]["dataset_mean"] is not None:
            axis.axhline(members[0]["dataset_mean"], color="black", linestyle=":", linewidth=1, label="dataset mean")
        if log_x:
            axis.set_xscale("log")
        axis.set_title(f"{task} {dataset}")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
    axes[0][-1].legend(*legend_entries(axes[0]), fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_learning_curves(records: Sequence[Record], choices: Mapping[Group, Optional[float]], path: str) -> str:
    """One panel per dataset: per algorithm the mean evaluation return over seeds at the
    chosen beta with a 95% bootstrap band, and the dataset's mean return dotted."""

    def draw(axis: Any, members: List[Record]) -> None:
        curves: Dict[str, List[Record]] = defaultdict(list)
        for record in members:
            curves[algorithm_name(record)].append(record)
        for algorithm, runs in sorted(curves.items()):
            steps = sorted(set.intersection(*(set(step for step, _ in run["curve"]) for run in runs)))
            if not steps:
                continue
            values = np.array([[dict(map(tuple, run["curve"]))[step] for step in steps] for run in runs])
            bands = np.array([bootstrap_ci(values[:, i], reps=2000) for i in range(len(steps))])
            (line,) = axis.plot(
                steps, values.mean(axis=0), label=algorithm, color=colour(algorithm), linestyle=line_style(algorithm)
            )
            axis.fill_between(steps, bands[:, 0], bands[:, 1], color=line.get_color(), alpha=0.2)

    return _dataset_panels(chosen(records, choices), path, "actor training steps", "episode return", draw)


def plot_beta(records: Sequence[Record], path: str) -> str:
    """Final return (mean and min-max over seeds) against beta, per algorithm, one panel per dataset."""

    def draw(axis: Any, members: List[Record]) -> None:
        by_algorithm: Dict[str, Dict[float, List[float]]] = defaultdict(lambda: defaultdict(list))
        for record in members:
            by_algorithm[algorithm_name(record)][record["beta"]].append(record["final_return"])
        for algorithm, points in sorted(by_algorithm.items()):
            betas = sorted(points)
            means = [np.mean(points[b]) for b in betas]
            (line,) = axis.plot(
                betas, means, marker="o", label=algorithm, color=colour(algorithm), linestyle=line_style(algorithm)
            )
            axis.fill_between(
                betas,
                [min(points[b]) for b in betas],
                [max(points[b]) for b in betas],
                color=line.get_color(),
                alpha=0.15,
            )

    with_beta = [record for record in records if record["beta"] is not None]
    return _dataset_panels(with_beta, path, "beta", "final return", draw, log_x=True)


def aggregate_scores(
    records: Sequence[Record],
    choices: Mapping[Group, Optional[float]],
    normalisers: Mapping[Tuple[str, str], Tuple[float, float]],
    reference: str = "omsd",
    reps: int = 2000,
) -> Dict[str, Any]:
    """rliable: IQM of normalised final returns with stratified-bootstrap 95% CIs per
    algorithm, and the probability that ``reference`` improves on each other algorithm."""
    from rliable import library, metrics

    matrices, columns = score_matrices(records, choices, normalisers)
    left_out = sorted({algorithm_name(record) for record in records} - set(matrices))
    if not columns or any(matrix.shape[0] == 0 for matrix in matrices.values()):
        return {"datasets": columns, "iqm": {}, "probability_of_improvement": {}, "left_out": left_out}
    iqm, iqm_ci = library.get_interval_estimates(
        matrices, lambda scores: np.array([metrics.aggregate_iqm(scores)]), reps=reps
    )
    result: Dict[str, Any] = {
        "datasets": columns,
        "seeds": int(next(iter(matrices.values())).shape[0]),
        "iqm": {
            name: {"value": float(iqm[name][0]), "ci": [float(iqm_ci[name][0][0]), float(iqm_ci[name][1][0])]}
            for name in matrices
        },
        "probability_of_improvement": {},
        "left_out": left_out,  # ran on fewer datasets than the others
    }
    if reference in matrices:
        pairs = {
            f"{reference},{other}": (matrices[reference], matrices[other]) for other in matrices if other != reference
        }
        if pairs:
            probability, probability_ci = library.get_interval_estimates(
                pairs, metrics.probability_of_improvement, reps=reps
            )
            result["probability_of_improvement"] = {
                pair.split(",")[1]: {
                    "value": float(np.ravel(probability[pair])[0]),
                    "ci": [float(np.ravel(probability_ci[pair][0])[0]), float(np.ravel(probability_ci[pair][1])[0])],
                }
                for pair in pairs
            }
    return result


def plot_aggregate(aggregate: Mapping[str, Any], path: str, reference: str = "omsd") -> str:
    """Two panels: IQM with CIs per algorithm; P(reference > other) with CIs."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    names = sorted(aggregate["iqm"])
    for row, name in enumerate(names):
        entry = aggregate["iqm"][name]
        axes[0].errorbar(
            entry["value"],
            row,
            xerr=[[entry["value"] - entry["ci"][0]], [entry["ci"][1] - entry["value"]]],
            fmt="o",
            capsize=3,
            color=colour(name),
        )
    axes[0].set_yticks(range(len(names)), names)
    axes[0].set_xlabel("IQM of normalised return (0 = Random, 1 = Expert)")
    others = sorted(aggregate["probability_of_improvement"])
    for row, name in enumerate(others):
        entry = aggregate["probability_of_improvement"][name]
        axes[1].errorbar(
            entry["value"],
            row,
            xerr=[[entry["value"] - entry["ci"][0]], [entry["ci"][1] - entry["value"]]],
            fmt="o",
            capsize=3,
            color=colour(name),
        )
    axes[1].set_yticks(range(len(others)), [f"{reference} > {name}" for name in others])
    axes[1].axvline(0.5, color="grey", linestyle=":")
    axes[1].set_xlim(0, 1)
    axes[1].set_xlabel("probability of improvement")
    seeds = aggregate.get("seeds", 0)
    title = f"{len(aggregate['datasets'])} datasets x {seeds} seeds, stratified bootstrap 95% CIs"
    if aggregate.get("left_out"):
        title += f"\nleft out (run on fewer datasets): {', '.join(aggregate['left_out'])}"
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
