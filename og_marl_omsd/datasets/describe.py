"""Data cards for vault datasets: episode-return statistics and the joint action plot.

``describe_path`` takes a ``<scenario>.vlt`` directory (every complete dataset in it) or
one dataset directory and prints, per dataset, the team episode return's mean, std, min
and max, the number of transitions and of complete episodes (as OG-MARL's data cards).
It also writes a PNG (default: ``<scenario>.vlt/joint_actions[-<dataset>].png``) with one
panel per dataset: a 2D histogram of agent 0's mean action (over its action dimensions)
against agent 1's, the paper's Fig. 1 for MaMuJoCo.

With two or more agents the card also gives each later agent's **coordination need** with its
95% interval (:mod:`og_marl_omsd.datasets.coordination`): how much the earlier agents'
actions reduce the held-out error of predicting its action given the state. It costs about a
minute per agent on 2 CPU cores and is cached beside the datasets
(``<scenario>.vlt/.cards/<dataset>.json``, keyed by the dataset's metadata and the
estimator's settings).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from og_marl_omsd.datasets.vaults import VaultLocation, episode_returns, read_dataset

# Datasets in the order of their expected skill, then any others alphabetically.
DATASET_ORDER = ("Random", "Medium-Replay", "Medium", "Expert")
PLOT_NAME = "joint_actions.png"


def location_from_path(path: str) -> VaultLocation:
    """The :class:`VaultLocation` of a ``<rel_dir>/<source>/<env>/<scenario>.vlt`` directory."""
    path = os.path.abspath(path.rstrip(os.sep))
    if not path.endswith(".vlt"):
        raise ValueError(f"{path} is not a <scenario>.vlt directory.")
    env_dir = os.path.dirname(path)
    source_dir = os.path.dirname(env_dir)
    return VaultLocation(
        source=os.path.basename(source_dir),
        env=os.path.basename(env_dir),
        scenario=os.path.basename(path)[: -len(".vlt")],
        rel_dir=os.path.dirname(source_dir),
    )


def dataset_statistics(experience: Mapping[str, Any]) -> Dict[str, float]:
    """Episode-return statistics (team reward, complete episodes) and sizes of one dataset."""
    returns = episode_returns(experience)
    statistics: Dict[str, float] = {
        "transitions": int(np.asarray(experience["actions"]).shape[0]),
        "episodes": int(returns.size),
    }
    for name, function in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
        statistics[f"return_{name}"] = float(function(returns)) if returns.size else float("nan")
    return statistics


def format_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    header = f"{'dataset':<15}{'return mean':>12}{'std':>10}{'min':>10}{'max':>10}{'transitions':>13}{'episodes':>10}"
    lines = [header, "-" * len(header)]
    for name, row in rows.items():
        lines.append(
            f"{name:<15}{row['return_mean']:>12.1f}{row['return_std']:>10.1f}{row['return_min']:>10.1f}"
            f"{row['return_max']:>10.1f}{row['transitions']:>13d}{row['episodes']:>10d}"
        )
    return "\n".join(lines)


def plot_joint_actions(actions: Mapping[str, np.ndarray], path: str, title: str = "") -> str:
    """One panel per dataset: 2D histogram of the mean action of agent 0 vs agent 1.

    Args:
        actions: dataset name -> actions ``(T, N, A)`` (N >= 2).
        path: PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(actions)
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    for axis, name in zip(axes[0], names):
        mean_action = np.asarray(actions[name], np.float64).mean(axis=-1)  # (T, N)
        axis.hist2d(
            mean_action[:, 0],
            mean_action[:, 1],
            bins=60,
            range=[[-1, 1], [-1, 1]],
            cmap="viridis",
            density=True,
            norm=matplotlib.colors.PowerNorm(0.4),
        )
        axis.set_title(name)
        axis.set_xlabel("agent 0 mean action")
        axis.set_aspect("equal")
    axes[0][0].set_ylabel("agent 1 mean action")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def coordination_card(
    location: VaultLocation, name: str, experience: Mapping[str, Any], settings: Any
) -> Optional[List[Dict[str, Any]]]:
    """The coordination need of each agent ``i > 1`` of one dataset (cached; see the module
    docstring); None when the dataset has fewer than 2 agents or too few episodes to hold out."""
    from og_marl_omsd.datasets.coordination import coordination_need

    if np.asarray(experience["actions"]).shape[1] < 2:
        return None
    with open(os.path.join(location.dataset_path(name), "metadata.json"), "rb") as handle:
        metadata = handle.read()
    key_source = json.dumps(dataclasses.asdict(settings), sort_keys=True, default=list).encode() + metadata
    key = hashlib.sha256(key_source).hexdigest()[:16]
    cache = os.path.join(location.path, ".cards", f"{name}.json")
    if os.path.isfile(cache):
        with open(cache) as handle:
            stored = json.load(handle)
        if stored.get("key") == key:
            return stored["coordination_need"]
    try:
        needs = coordination_need(experience, settings)
    except ValueError:
        return None
    card = [dataclasses.asdict(need) for need in needs]
    try:
        from og_marl_omsd.support.files import write_json

        os.makedirs(os.path.dirname(cache), exist_ok=True)
        write_json(cache, {"key": key, "settings": dataclasses.asdict(settings), "coordination_need": card}, indent=1)
    except OSError:
        pass  # a read-only vault: the card is printed, not cached
    return card


def format_coordination(cards: Mapping[str, Optional[List[Dict[str, Any]]]]) -> str:
    """One line per dataset: each later agent's coordination need with its 95% interval."""
    lines = ["coordination need (held-out error reduction from the earlier agents' actions, 95% CI over splits)"]
    for name, card in cards.items():
        if card is None:
            lines.append(f"  {name:<15}n/a (one agent, or too few complete episodes to hold some out)")
            continue
        parts = [
            f"agent {row['agent'] + 1}: {100 * row['need']:+.1f}% [{100 * row['low']:+.1f}, {100 * row['high']:+.1f}]"
            for row in card
        ]
        lines.append(f"  {name:<15}" + "; ".join(parts))
    return "\n".join(lines)


def _ordered(names: Sequence[str]) -> List[str]:
    known = [name for name in DATASET_ORDER if name in names]
    return known + sorted(name for name in names if name not in DATASET_ORDER)


def describe_path(
    path: str, plot_path: Optional[str] = None, print_fn: Any = print, coordination: Any = "default"
) -> Dict[str, Dict[str, float]]:
    """Print the data card of a ``.vlt`` directory or one dataset directory and write the plot.

    ``coordination``: the estimator's :class:`~og_marl_omsd.datasets.coordination.EstimatorSettings`
    (``"default"``: its defaults; None: no coordination need). Each row of the result then also
    has ``coordination_need``: the list of per-agent results (or None).

    Returns:
        dataset name -> statistics (see :func:`dataset_statistics`).

    Raises:
        FileNotFoundError: if the path holds no complete dataset.
    """
    path = os.path.abspath(path.rstrip(os.sep))
    if os.path.isfile(os.path.join(path, "metadata.json")) and os.path.dirname(path).endswith(".vlt"):
        location, names = location_from_path(os.path.dirname(path)), [os.path.basename(path)]
    else:
        location = location_from_path(path)
        names = _ordered(location.available())
    if not names or not all(location.exists(name) for name in names):
        raise FileNotFoundError(f"No complete dataset at {path}.")
    if coordination == "default":
        from og_marl_omsd.datasets.coordination import EstimatorSettings

        coordination = EstimatorSettings()
    rows: Dict[str, Dict[str, Any]] = {}
    actions, cards = {}, {}
    for name in names:
        experience = read_dataset(location, name)
        rows[name] = dataset_statistics(experience)
        actions[name] = experience["actions"]
        if coordination is not None:
            cards[name] = coordination_card(location, name, experience, coordination)
            rows[name]["coordination_need"] = cards[name]
    print_fn(f"{location.source}/{location.env}/{location.scenario}")
    print_fn(format_table(rows))
    if cards:
        print_fn(format_coordination(cards))
    if all(np.asarray(value).shape[1] >= 2 for value in actions.values()):
        if plot_path is None:
            suffix = "" if len(names) > 1 else f"-{names[0]}"
            plot_path = os.path.join(location.path, PLOT_NAME.replace(".png", f"{suffix}.png"))
        plot_joint_actions(actions, plot_path, title=f"{location.scenario}: joint action distribution")
        print_fn(f"joint action plot: {plot_path}")
    return rows
