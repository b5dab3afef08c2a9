"""Out-of-support joint actions: how often a learned joint policy leaves the dataset's support.

The measure (documented in the README's comparison protocol): a joint action ``a`` at a
dataset state ``s`` is *in support* when it lies close to a joint action that the dataset
took at a state like ``s``. Concretely:

1. The dataset is split at random into a reference part and a held-out part (at most
   ``max_holdout`` pairs: 20,000 give the share to within +-0.5% at two standard errors).
2. States are standardised by the reference part's mean and standard deviation; for a
   query state ``s`` the ``num_neighbours`` nearest reference states are found (k-d tree).
3. The query's distance is the smallest root-mean-square difference (over the joint
   action's ``N x A`` entries) between ``a`` and the joint actions taken at those states.
4. Calibration: the same distance for the held-out dataset pairs ``(s, a_data)`` gives the
   threshold, its ``quantile`` (0.99 by default): by construction about 1% of the
   dataset's own joint actions are called out of support.
5. The OOD share of a policy is the fraction of held-out states ``s`` at which
   ``pi(s)``'s distance exceeds the threshold.

A joint action whose agents each act like the data but not *together* (the bandit's
``(1, -1)`` when the data holds ``(1, 1)`` and ``(-1, -1)``) is far from every joint action
of the data, so it counts as out of support; a per-agent measure would miss it.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np


class JointActionSupport:
    """Nearest-neighbour support test for joint actions given the state (see the module doc).

    Args:
        states: dataset states ``(M, S)``.
        actions: dataset joint actions ``(M, N, A)`` (or ``(M, D)``).
        holdout_fraction: share of the dataset held out for calibration and queries.
        quantile: the held-out distances' quantile used as the threshold.
        num_neighbours: reference states compared for each query.
        max_reference: at most this many reference pairs (a random subset) are indexed.
        max_holdout: at most this many held-out pairs (calibration and queries).
        seed: seeds the split and the subset.

    Raises:
        ValueError: for mismatched shapes, too few pairs or settings out of range.
    """

    def __init__(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        holdout_fraction: float = 0.1,
        quantile: float = 0.99,
        num_neighbours: int = 16,
        max_reference: int = 200_000,
        max_holdout: int = 20_000,
        seed: int = 0,
    ):
        from scipy.spatial import cKDTree

        states = np.asarray(states, np.float64).reshape(len(states), -1)
        actions = np.asarray(actions, np.float64).reshape(len(actions), -1)
        if len(states) != len(actions):
            raise ValueError(f"states ({len(states)}) and actions ({len(actions)}) must pair up.")
        if not 0.0 < holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}.")
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}.")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(states))
        num_holdout = int(round(holdout_fraction * len(states)))
        holdout, reference = order[:num_holdout][:max_holdout], order[num_holdout:][:max_reference]
        if min(num_holdout, max_holdout) < 10 or len(reference) < num_neighbours:
            raise ValueError(
                f"Too few pairs ({len(states)}) for a support estimate: need at least "
                f"{max(10 / holdout_fraction, num_neighbours / (1 - holdout_fraction)):.0f}."
            )
        self.num_neighbours = int(num_neighbours)
        self.quantile = float(quantile)
        self._mean = states[reference].mean(axis=0)
        self._std = np.where(states[reference].std(axis=0) > 1e-8, states[reference].std(axis=0), 1.0)
        self._tree = cKDTree(self._standardise(states[reference]))
        self._reference_actions = actions[reference]
        self.holdout_index = holdout
        self.holdout_states = states[holdout]
        self.holdout_actions = actions[holdout]
        self.holdout_observations: Optional[np.ndarray] = None  # set by dataset_support (for policies)
        # Every policy is asked at the same held-out states: their neighbours are found once.
        self._holdout_neighbours = self._neighbours(self.holdout_states)
        self.holdout_distances = self._distances(self._holdout_neighbours, self.holdout_actions)
        self.threshold = float(np.quantile(self.holdout_distances, self.quantile))

    def _standardise(self, states: np.ndarray) -> np.ndarray:
        return (states - self._mean) / self._std

    def _neighbours(self, states: np.ndarray) -> np.ndarray:
        """Indices of the nearest reference states ``(Q, K)``."""
        states = np.asarray(states, np.float64).reshape(len(states), -1)
        _, neighbours = self._tree.query(self._standardise(states), k=self.num_neighbours, workers=-1)
        return np.asarray(neighbours).reshape(len(states), -1)

    def _distances(self, neighbours: np.ndarray, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, np.float64).reshape(len(actions), -1)
        differences = self._reference_actions[neighbours] - actions[:, None, :]  # (Q,K,D)
        return np.sqrt(np.mean(differences**2, axis=-1)).min(axis=-1)

    def distances(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Each pair's RMS distance to the nearest joint action taken at the nearest states ``(Q,)``."""
        if len(states) != len(actions):
            raise ValueError(f"states ({len(states)}) and actions ({len(actions)}) must pair up.")
        return self._distances(self._neighbours(states), actions)

    def ood_share(self, actions: np.ndarray, states: Optional[np.ndarray] = None) -> float:
        """Fraction of joint actions out of support; ``actions`` are the policy's at the
        held-out states (the default: their neighbours were found once) or at ``states``."""
        if states is None:
            if len(actions) != len(self.holdout_states):
                expected = len(self.holdout_states)
                raise ValueError(f"Expected actions at the {expected} held-out states, got {len(actions)}.")
            distances = self._distances(self._holdout_neighbours, actions)
        else:
            distances = self.distances(states, actions)
        return float(np.mean(distances > self.threshold))


def dataset_support(experience: Mapping[str, Any], max_pairs: int = 200_000, seed: int = 0) -> "JointActionSupport":
    """The support of a dataset read by :func:`~og_marl_omsd.datasets.vaults.read_dataset`
    (time axis first): its states ``infos.state`` and joint actions. The held-out part's
    observations are kept as ``support.holdout_observations`` for the policy to act on."""
    states = np.asarray(experience["infos"]["state"])
    actions = np.clip(np.asarray(experience["actions"]), -1.0, 1.0)  # as the systems train on them
    support = JointActionSupport(states, actions, max_reference=max_pairs, seed=seed)
    support.holdout_observations = np.asarray(experience["observations"])[support.holdout_index]
    return support


def run_ood_share(run_dir: str, support: "JointActionSupport") -> Optional[float]:
    """OOD share of a finished run's exported policy (``<run_dir>/policy``) at the held-out
    dataset states; ``None`` for a run that exported no policy (OG-MARL's recurrent systems)."""
    from og_marl_omsd.runner.policy import load_policy

    try:
        policy = load_policy(run_dir)
    except FileNotFoundError:
        return None
    observations = support.holdout_observations
    if observations is None:
        raise ValueError("This support estimate keeps no observations: build it with dataset_support.")
    actions = np.concatenate([policy.actions(observations[i : i + 4096]) for i in range(0, len(observations), 4096)])
    return support.ood_share(actions)
