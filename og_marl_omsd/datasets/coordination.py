"""The coordination need of a dataset: how much the earlier agents' actions tell about an agent's
action once the state is known.

OMSD's sequential behaviour model ``mu(a_i | s, a_<i)`` can only beat a product of per-agent
models ``mu(a_i | s)`` when the prefix ``a_<i`` carries information about ``a_i`` that ``s``
does not. For each agent ``i > 1`` in the agent order this module measures

    need_i = 1 - MSE(a_i | s, a_<i) / MSE(a_i | s, shuffled a_<i)

on held-out episodes: the relative reduction of the error of predicting ``a_i`` when the
prefix is given, against the same model given a shuffled prefix (so that both models have
the same inputs, capacity and training: the only difference is whether the prefix is the one
that went with this state). ``need_i`` is ~0 when ``a_i`` is independent of ``a_<i`` given
``s`` (every single-policy dataset with independent action noise) and positive when the
agents' actions are coupled beyond the state (a team whose agents switch plays together).
The error is the MSE of the conditional mean, so the measure sees couplings that move the
mean (mode choices, shared perturbations), not ones that change only the spread.

The estimator: ``splits`` random splits of the complete episodes (``test_fraction`` held
out); on each, two MLPs (same initialisation, same batches) trained with Adam on up to
``train_samples`` transitions of the training episodes, early-stopped on a validation part of
them, and scored on up to ``test_samples`` held-out transitions. The result is the mean over
splits with a 95% Student-t interval across splits. Inputs are standardised with the
training part's statistics; the state is ``infos.state`` (the agents' observations
concatenated when a dataset has none).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

# Two-sided 95% Student-t quantiles by degrees of freedom (splits - 1).
_T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclasses.dataclass(frozen=True)
class CoordinationNeed:
    """The coordination need of one agent (see the module docstring)."""

    agent: int  # index in the agent order (>= 1)
    need: float  # mean over splits of 1 - MSE(prefix) / MSE(shuffled prefix)
    low: float  # 95% interval across splits
    high: float
    per_split: Sequence[float]

    def __str__(self) -> str:
        return f"{100 * self.need:+.1f}% [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"


@dataclasses.dataclass(frozen=True)
class EstimatorSettings:
    """Sizes of the coordination-need estimator (defaults: ~1 minute per agent on 2 CPU cores)."""

    splits: int = 5
    test_fraction: float = 0.2
    train_samples: int = 20_000
    test_samples: int = 10_000
    hidden_sizes: Sequence[int] = (128, 128)
    steps: int = 3_000
    batch_size: int = 256
    learning_rate: float = 1e-3
    validate_every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        if self.splits < 2 or self.splits > len(_T_975) + 1:
            raise ValueError(f"splits must be between 2 and {len(_T_975) + 1}, got {self.splits}.")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}.")
        if min(self.train_samples, self.test_samples, self.steps, self.batch_size, self.validate_every) < 1:
            raise ValueError("train_samples, test_samples, steps, batch_size and validate_every must be >= 1.")


def episode_ids(experience: Mapping[str, Any]) -> np.ndarray:
    """The episode index of every transition (an episode ends at a terminal or truncation);
    transitions after the last end (a cut episode) get -1."""
    ends = np.maximum(np.asarray(experience["terminals"]), np.asarray(experience["truncations"])).max(axis=-1) > 0
    ids = np.concatenate([[0], np.cumsum(ends)[:-1]]).astype(np.int64)
    ids[ids >= int(ends.sum())] = -1
    return ids


def state_inputs(experience: Mapping[str, Any]) -> np.ndarray:
    """``(T, S)``: the global state, or the agents' observations concatenated."""
    infos = experience.get("infos") or {}
    if "state" in infos:
        return np.asarray(infos["state"], np.float32).reshape(len(experience["actions"]), -1)
    observations = np.asarray(experience["observations"], np.float32)
    return observations.reshape(observations.shape[0], -1)


def coordination_need(
    experience: Mapping[str, Any], settings: EstimatorSettings = EstimatorSettings()
) -> List[CoordinationNeed]:
    """The coordination need of agents ``1 .. N-1`` of a dataset (OG-MARL experience arrays
    with a leading time axis: ``actions (T, N, A)``, ``terminals``, ``truncations``, ``infos.state``).

    Raises:
        ValueError: fewer than 2 agents, or too few complete episodes to hold some out.
    """
    actions = np.asarray(experience["actions"], np.float32)
    if actions.ndim != 3 or actions.shape[1] < 2:
        raise ValueError(f"The coordination need needs actions (T, N >= 2, A); got shape {actions.shape}.")
    return coordination_need_of_arrays(state_inputs(experience), actions, episode_ids(experience), settings)


def coordination_need_of_arrays(
    states: np.ndarray, actions: np.ndarray, episodes: np.ndarray, settings: EstimatorSettings = EstimatorSettings()
) -> List[CoordinationNeed]:
    """:func:`coordination_need` on arrays: ``states (T, S)``, ``actions (T, N, A)``, ``episodes
    (T,)`` (episode index per transition; negative = not part of a complete episode)."""
    complete = np.unique(episodes[episodes >= 0])
    held_out = int(round(settings.test_fraction * complete.size))
    if held_out < 1 or complete.size - held_out < 1:
        raise ValueError(
            f"The coordination need holds out whole episodes; {complete.size} complete episodes are too few."
        )
    rng = np.random.default_rng(settings.seed)
    results: Dict[int, List[float]] = {agent: [] for agent in range(1, actions.shape[1])}
    for _ in range(settings.splits):
        test_episodes = rng.choice(complete, held_out, replace=False)
        is_test = np.isin(episodes, test_episodes)
        train_rows = np.flatnonzero(~is_test & (episodes >= 0))
        test_rows = np.flatnonzero(is_test)
        train_rows = _subsample(train_rows, settings.train_samples, rng)
        test_rows = _subsample(test_rows, settings.test_samples, rng)
        for agent in results:
            results[agent].append(_split_need(states, actions, agent, train_rows, test_rows, settings, rng))
    return [_summary(agent, values) for agent, values in results.items()]


def _subsample(rows: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(rows, size, replace=False)) if rows.size > size else rows


def _summary(agent: int, per_split: Sequence[float]) -> CoordinationNeed:
    values = np.asarray(per_split, np.float64)
    mean = float(values.mean())
    half = _T_975[values.size - 1] * float(values.std(ddof=1)) / np.sqrt(values.size)
    return CoordinationNeed(agent, mean, mean - half, mean + half, tuple(float(value) for value in values))


def _split_need(
    states: np.ndarray,
    actions: np.ndarray,
    agent: int,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    settings: EstimatorSettings,
    rng: np.random.Generator,
) -> float:
    """1 - test MSE with the prefix / test MSE with a shuffled prefix, on one split."""
    prefix = actions[:, :agent].reshape(actions.shape[0], -1)
    target = actions[:, agent]
    train_shuffle = rng.permutation(train_rows.size)
    test_shuffle = rng.permutation(test_rows.size)
    model_seed = int(rng.integers(2**31))
    errors = []
    for shuffled in (False, True):
        train_prefix = prefix[train_rows][train_shuffle] if shuffled else prefix[train_rows]
        test_prefix = prefix[test_rows][test_shuffle] if shuffled else prefix[test_rows]
        train_x = np.concatenate([states[train_rows], train_prefix], axis=1)
        test_x = np.concatenate([states[test_rows], test_prefix], axis=1)
        errors.append(_fit_and_score(train_x, target[train_rows], test_x, target[test_rows], settings, model_seed))
    return 1.0 - errors[0] / errors[1]


def _fit_and_score(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    settings: EstimatorSettings,
    seed: int,
) -> float:
    """Held-out MSE of an MLP regression, early-stopped on the last 10% of the training rows."""
    import tensorflow as tf

    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    validation = max(1, train_x.shape[0] // 10)
    fit_x, fit_y = train_x[:-validation], train_y[:-validation]
    valid_x, valid_y = train_x[-validation:], train_y[-validation:]
    if fit_x.shape[0] < 1:
        raise ValueError("The coordination need needs more than one training transition.")

    rng = np.random.default_rng(seed)
    sizes = [train_x.shape[1], *settings.hidden_sizes, train_y.shape[1]]
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        weights.append(tf.Variable(rng.uniform(-bound, bound, (fan_in, fan_out)).astype("float32")))
        weights.append(tf.Variable(np.zeros(fan_out, "float32")))
    optimiser = tf.optimizers.Adam(settings.learning_rate)

    def predict(x: Any) -> Any:
        hidden = x
        for layer in range(0, len(weights), 2):
            hidden = tf.matmul(hidden, weights[layer]) + weights[layer + 1]
            if layer < len(weights) - 2:
                hidden = tf.nn.relu(hidden)
        return hidden

    @tf.function
    def train(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(predict(x) - y))
        optimiser.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    def mse(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.square(predict(tf.constant(x, tf.float32)).numpy() - y)))

    best, best_weights = np.inf, [weight.numpy() for weight in weights]
    for step in range(1, settings.steps + 1):
        batch = rng.integers(0, fit_x.shape[0], settings.batch_size)
        train(tf.constant(fit_x[batch], tf.float32), tf.constant(fit_y[batch], tf.float32))
        if step % settings.validate_every == 0 or step == settings.steps:
            error = mse(valid_x, valid_y)
            if error < best:
                best, best_weights = error, [weight.numpy() for weight in weights]
    for weight, value in zip(weights, best_weights):
        weight.assign(value)
    return mse(test_x, test_y)
