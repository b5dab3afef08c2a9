"""The gymnasium-robotics MaMuJoCo environment on OG-MARL's interface."""

from __future__ import annotations

import numpy as np
import pytest

from og_marl_omsd.environments import make_plugin_environment
from og_marl_omsd.environments.mamujoco import SCENARIOS, make_mamujoco

pytestmark = pytest.mark.slow  # trains or runs whole runs: `pytest -m "not slow"` leaves it out


def _joint(observations, agents):
    return np.stack([observations[agent] for agent in agents])


def test_2halfcheetah_interface():
    env = make_mamujoco("2halfcheetah", seed=0)
    assert env.agents == ["agent_0", "agent_1"]
    assert (env.num_agents, env.num_actions) == (2, 3)
    assert env.observation_shape == (12,) and env.state_shape == (17,)
    assert env.max_episode_length == 1000
    observations, info = env.reset()
    assert set(observations) == set(env.agents)
    assert all(value.dtype == np.float32 and value.shape == (12,) for value in observations.values())
    assert info["state"].dtype == np.float32 and info["state"].shape == (17,)
    observations, rewards, terminals, truncations, info = env.step({agent: np.ones(3) for agent in env.agents})
    assert rewards["agent_0"] == rewards["agent_1"]  # shared team reward
    assert isinstance(rewards["agent_0"], np.float32)
    assert terminals == {"agent_0": False, "agent_1": False}
    assert truncations == {"agent_0": False, "agent_1": False}
    assert info["state"].shape == (17,)


def test_episode_ends_by_truncation_after_1000_steps():
    env = make_mamujoco("2halfcheetah", seed=0)
    env.reset()
    zero = {agent: np.zeros(3) for agent in env.agents}
    for step in range(1, 1001):  # noqa: B007 (the last step is checked after the loop)
        _, _, terminals, truncations, _ = env.step(zero)
        if any(truncations.values()) or any(terminals.values()):
            break
    assert step == 1000 and all(truncations.values()) and not any(terminals.values())


def test_reset_is_reproducible_for_a_seed():
    first, second, other = (make_mamujoco("2halfcheetah", seed=seed) for seed in (7, 7, 8))
    resets_first = [_joint(first.reset()[0], first.agents) for _ in range(3)]
    resets_second = [_joint(second.reset()[0], second.agents) for _ in range(3)]
    for a, b in zip(resets_first, resets_second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(resets_first[0], resets_first[1])  # reset k uses seed + k
    other_first = _joint(other.reset()[0], other.agents)
    assert not np.array_equal(resets_first[0], other_first)
    np.testing.assert_array_equal(resets_first[1], other_first)  # seeds 7 + 1 and 8 + 0
    # The same actions then give the same trajectory.
    actions = {agent: np.full(3, 0.5) for agent in first.agents}
    np.testing.assert_array_equal(first.step(actions)[0]["agent_1"], second.step(actions)[0]["agent_1"])


def test_unknown_scenario_lists_the_known_ones():
    with pytest.raises(ValueError, match="Unknown MaMuJoCo scenario 'halfcheetah9'.*2halfcheetah.*6halfcheetah"):
        make_mamujoco("halfcheetah9")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_builds_with_padded_observations(scenario):
    env = make_plugin_environment("gymnasium_mamujoco", scenario, seed=1)
    observations, info = env.reset()
    assert len(env.agents) == env.num_agents == int(SCENARIOS[scenario][1].split("x")[0])
    assert all(value.shape == env.observation_shape for value in observations.values())
    assert info["state"].shape == env.state_shape
    _, rewards, _, _, _ = env.step({agent: np.zeros(env.num_actions) for agent in env.agents})
    assert set(rewards) == set(env.agents)
