"""The paper's 2-agent continuous bandit (section 5.1) and its behaviour dataset.

One constant observation and state, one-step episodes, ``a_i`` in [-1, 1], shared reward
``r = a_1 * a_2`` (maximum 1 at (1, 1) and (-1, -1)). The dataset is a two-component
Gaussian mixture of joint actions, means (0.8, 0.8) and (-0.8, -0.8), std 0.3 per
dimension, equal weights, clipped to [-1, 1].
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

AGENTS = ("agent_0", "agent_1")
SCENARIOS = ("2agent_gmm",)


def bandit_reward(actions: np.ndarray) -> np.ndarray:
    """Team reward of joint actions ``(..., 2)``: ``a_1 * a_2`` after clipping to [-1, 1]."""
    clipped = np.clip(actions, -1.0, 1.0)
    return clipped[..., 0] * clipped[..., 1]


class BanditEnvironment:
    """OG-MARL-style wrapper of the one-step 2-agent bandit.

    ``get_stats()`` returns the coordination rate (``sign(a_1) == sign(a_2)``) and the mean
    action of each agent over the episodes played since the previous call, and clears them.
    """

    def __init__(self, scenario: str = "2agent_gmm", seed: int = 42):
        if scenario not in SCENARIOS:
            raise ValueError(f"Unknown bandit scenario {scenario!r}; known: {', '.join(SCENARIOS)}.")
        self.agents = list(AGENTS)
        self.num_agents = len(AGENTS)
        self.num_actions = 1
        self.observation_shape = (1,)
        self.state_shape = (1,)
        self.max_episode_length = 1
        self.seed = seed
        self._played: list = []  # joint actions since the last get_stats()

    def _observe(self) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
        observations = {agent: np.ones(self.observation_shape, "float32") for agent in self.agents}
        return observations, {"state": np.ones(self.state_shape, "float32")}

    def reset(self) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
        return self._observe()

    def step(self, actions: Dict[str, np.ndarray]) -> Tuple[Any, ...]:
        joint = np.array([float(np.asarray(actions[agent]).reshape(-1)[0]) for agent in self.agents])
        reward = float(bandit_reward(joint))
        self._played.append(joint)
        observations, info = self._observe()
        rewards = {agent: np.float32(reward) for agent in self.agents}
        terminals = {agent: True for agent in self.agents}
        truncations = {agent: False for agent in self.agents}
        return observations, rewards, terminals, truncations, info

    def get_stats(self) -> Dict[str, float]:
        if not self._played:
            return {}
        played = np.array(self._played)
        self._played = []
        stats = {"coordination_rate": float(np.mean(np.sign(played[:, 0]) == np.sign(played[:, 1])))}
        stats.update({f"mean_action_{agent}": float(played[:, i].mean()) for i, agent in enumerate(self.agents)})
        return stats


def make_bandit(scenario: str, seed: int = 42) -> BanditEnvironment:
    return BanditEnvironment(scenario, seed=seed)


def generate_bandit_experience(
    num_samples: int = 1_000_000, mean: float = 0.8, std: float = 0.3, seed: int = 0
) -> Dict[str, Any]:
    """The bandit dataset as OG-MARL experience arrays with a leading time axis.

    Deterministic for a given ``seed``. Every step is a whole (terminal) episode.
    """
    rng = np.random.default_rng(seed)
    modes = rng.integers(0, 2, num_samples) * 2 - 1  # +1 or -1, equal weights
    actions = np.clip(modes[:, None] * mean + std * rng.standard_normal((num_samples, 2)), -1.0, 1.0)
    rewards = bandit_reward(actions)
    return {
        "observations": np.ones((num_samples, 2, 1), "float32"),
        "actions": actions[..., None].astype("float32"),  # (T, N, A=1)
        "rewards": np.repeat(rewards[:, None], 2, 1).astype("float32"),
        "terminals": np.ones((num_samples, 2), "float32"),
        "truncations": np.zeros((num_samples, 2), "float32"),
        "infos": {"state": np.ones((num_samples, 1), "float32")},
    }
