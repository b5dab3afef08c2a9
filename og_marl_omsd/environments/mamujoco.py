"""Multi-agent MuJoCo (gymnasium-robotics ``mamujoco_v1``) on OG-MARL's environment interface.

OG-MARL calls this environment ``gymnasium_mamujoco``. Scenarios are OG-MARL's names
(``2halfcheetah`` is HalfCheetah 2x3 with ``agent_obsk=1``); observations, rewards and the
global state are float32; observations of agents that see fewer joints are zero-padded to
the largest agent observation, as OG-MARL pads them.

Unlike OG-MARL's wrapper, this one is seeded: reset ``k`` (counting from 0) uses seed
``seed + k``, so a fresh environment made with the same seed replays the same episodes;
``checkpoint_state`` / ``restore_checkpoint_state`` carry ``k`` across a resumed run.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

# OG-MARL scenario name -> (gymnasium-robotics scenario, agent_conf); all with agent_obsk=1.
SCENARIOS: Dict[str, Tuple[str, str]] = {
    "2halfcheetah": ("HalfCheetah", "2x3"),
    "6halfcheetah": ("HalfCheetah", "6x1"),
    "2ant": ("Ant", "2x4"),
    "4ant": ("Ant", "4x2"),
    "3hopper": ("Hopper", "3x1"),
    "2walker": ("Walker2d", "2x3"),
}
AGENT_OBSK = 1
MAX_EPISODE_LENGTH = 1000  # gymnasium's TimeLimit for every scenario above


def scenario_spec(scenario: str) -> Tuple[str, str]:
    """``(gymnasium-robotics scenario, agent_conf)`` of an OG-MARL scenario name.

    Raises:
        ValueError: for an unknown scenario, listing the known ones.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"Unknown MaMuJoCo scenario {scenario!r}; known: {', '.join(sorted(SCENARIOS))}.")
    return SCENARIOS[scenario]


_WARNED: set = set()


def route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings to stderr (each distinct one once) instead of its default
    handler, which appends them to ``MUJOCO_LOG.TXT`` in the working directory."""
    import sys

    import mujoco

    def warn(message: str) -> None:
        text = message.split(" Time =")[0]
        if text not in _WARNED:
            _WARNED.add(text)
            print(f"[mujoco] warning: {text}", file=sys.stderr, flush=True)

    mujoco.set_mju_user_warning(warn)


class MaMuJoCoEnvironment:
    """OG-MARL-style wrapper of one gymnasium-robotics MaMuJoCo task.

    Attributes:
        agents: agent names (``agent_0`` ...), fixed for the environment's life.
        num_agents, num_actions: number of agents and action dimensions per agent.
        observation_shape: ``(O,)``, the largest agent observation (others zero-padded).
        state_shape: ``(S,)``, the global state.
        max_episode_length: 1000 steps (episodes end by truncation, or by termination for
            the tasks that can fall over).
    """

    def __init__(self, scenario: str = "2halfcheetah", seed: int = 42):
        import gymnasium_robotics

        route_mujoco_warnings()
        gym_scenario, agent_conf = scenario_spec(scenario)
        self.scenario = scenario
        self.seed = int(seed)
        self._environment = gymnasium_robotics.mamujoco_v1.parallel_env(gym_scenario, agent_conf, agent_obsk=AGENT_OBSK)
        self.agents = list(self._environment.possible_agents)
        self.num_agents = len(self.agents)
        action_dims = {self._environment.action_space(agent).shape[0] for agent in self.agents}
        if len(action_dims) != 1:
            raise ValueError(f"Scenario {scenario!r} has agents with different action sizes {sorted(action_dims)}.")
        self.num_actions = action_dims.pop()
        self._observation_sizes = [self._environment.observation_space(agent).shape[0] for agent in self.agents]
        self.observation_shape = (max(self._observation_sizes),)
        self.state_shape = tuple(self._environment.state().shape)
        self.max_episode_length = MAX_EPISODE_LENGTH
        self._resets = 0

    def _pad(self, observations: Dict[str, Any]) -> Dict[str, np.ndarray]:
        padded = {}
        for agent in self.agents:
            observation = np.zeros(self.observation_shape, "float32")
            value = np.asarray(observations[agent], "float32")
            observation[: value.shape[0]] = value
            padded[agent] = observation
        return padded

    def _info(self) -> Dict[str, Any]:
        return {"state": np.asarray(self._environment.state(), "float32")}

    def reset(self) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
        observations, _ = self._environment.reset(seed=self.seed + self._resets)
        self._resets += 1
        return self._pad(observations), self._info()

    def checkpoint_state(self) -> Dict[str, int]:
        """The seeding state (resets so far): saved with a run's checkpoint so that a resumed run
        evaluates on the same episodes as an uninterrupted one."""
        return {"resets": int(self._resets)}

    def restore_checkpoint_state(self, state: Dict[str, int]) -> None:
        self._resets = int(state["resets"])

    def step(self, actions: Dict[str, np.ndarray]) -> Tuple[Any, ...]:
        actions = {
            agent: np.clip(np.asarray(actions[agent], "float32").reshape(-1), -1.0, 1.0) for agent in self.agents
        }
        observations, rewards, terminals, truncations, _ = self._environment.step(actions)
        return (
            self._pad(observations),
            {agent: np.float32(rewards[agent]) for agent in self.agents},
            {agent: bool(terminals[agent]) for agent in self.agents},
            {agent: bool(truncations[agent]) for agent in self.agents},
            self._info(),
        )

    def get_stats(self) -> Dict[str, float]:
        return {}

    def close(self) -> None:
        self._environment.close()


def make_mamujoco(scenario: str, seed: int = 42) -> MaMuJoCoEnvironment:
    """The MaMuJoCo environment for an OG-MARL scenario name (e.g. ``2halfcheetah``)."""
    return MaMuJoCoEnvironment(scenario, seed=seed)
