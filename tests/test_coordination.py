"""The coordination need (og_marl_omsd/datasets/coordination.py) and the team-switch policy
(og_marl_omsd/datasets/team_switch.py): calibration on constructed data and the switch's rules."""

import numpy as np
import pytest

from og_marl_omsd.datasets.coordination import (
    EstimatorSettings,
    coordination_need,
    coordination_need_of_arrays,
    episode_ids,
)
from og_marl_omsd.datasets.team_switch import TeamSwitchPolicy, switch_latents

SMALL = EstimatorSettings(
    splits=3, train_samples=2000, test_samples=2000, steps=400, validate_every=100, hidden_sizes=(32, 32)
)


def _constructed(kind: str, transitions: int = 6000, seed: int = 1):
    """States, 2-agent actions and episode ids (episodes of 50 steps) of one construction."""
    rng = np.random.default_rng(seed)
    states = rng.standard_normal((transitions, 6)).astype("float32")
    w1, w1b = rng.standard_normal((2, 6, 2))
    w2 = w1 + 0.3 * rng.standard_normal((6, 2))  # agent 2's policy resembles agent 1's: a_1 is a proxy of s
    w2b = rng.standard_normal((6, 2))
    noise = lambda scale: scale * rng.standard_normal((transitions, 2))  # noqa: E731
    a1 = np.tanh(0.5 * states @ w1) + noise(0.2)
    if kind == "independent":
        a2 = np.tanh(0.5 * states @ w2) + noise(0.2)
    elif kind == "function":  # a_2 a function of (s, a_1) plus small noise
        a2 = np.tanh(0.5 * states @ w2 + 1.5 * a1) + noise(0.05)
    elif kind in ("shared_switch", "own_switch"):
        team = rng.random((transitions, 1)) < 0.5
        a1 = np.where(team, np.tanh(0.5 * states @ w1), np.tanh(0.5 * states @ w1b)) + noise(0.2)
        if kind == "own_switch":
            team = rng.random((transitions, 1)) < 0.5
        a2 = np.where(team, np.tanh(0.5 * states @ w2), np.tanh(0.5 * states @ w2b)) + noise(0.2)
    else:
        raise ValueError(kind)
    return states, np.stack([a1, a2], axis=1).astype("float32"), np.arange(transitions) // 50


@pytest.mark.parametrize("kind", ["independent", "own_switch"])
def test_the_need_reads_zero_when_agent_2_is_independent_of_agent_1_given_the_state(kind):
    (need,) = coordination_need_of_arrays(*_constructed(kind), SMALL)
    assert need.agent == 1
    assert need.low <= 0.0 <= need.high, need
    assert abs(need.need) < 0.05, need


@pytest.mark.parametrize("kind", ["function", "shared_switch"])
def test_the_need_is_clearly_positive_when_agent_2_depends_on_agent_1(kind):
    (need,) = coordination_need_of_arrays(*_constructed(kind), SMALL)
    assert need.low > 0.1 and need.need > 0.2, need  # independent data reads |need| < 0.05


def test_the_need_of_a_dataset_reads_the_state_and_complete_episodes_only():
    states, actions, _ = _constructed("function", transitions=3000)
    ends = np.zeros((3000, 2), "float32")
    ends[49::50] = 1.0
    ends[-1] = 0.0  # the last episode is cut: not part of any split
    experience = {"actions": actions, "terminals": ends, "truncations": np.zeros_like(ends), "infos": {"state": states}}
    ids = episode_ids(experience)
    assert ids[0] == 0 and ids[50] == 1 and (ids[-50:] == -1).all() and ids.max() == 58
    needs = coordination_need(experience, SMALL)
    assert len(needs) == 1 and needs[0].low > 0.1


def test_the_need_rejects_one_agent_and_too_few_episodes():
    states, actions, _ = _constructed("independent", transitions=200)
    with pytest.raises(ValueError, match="N >= 2"):
        coordination_need({"actions": actions[:, :1], "terminals": np.ones((200, 1)), "truncations": np.ones((200, 1))})
    with pytest.raises(ValueError, match="too few"):
        coordination_need_of_arrays(states, actions, np.zeros(200, int), SMALL)
    with pytest.raises(ValueError, match="splits"):
        EstimatorSettings(splits=1)


# ------------------------------------------------------------------------------ team switch
def test_a_shared_switch_gives_every_agent_the_same_behaviour_and_an_own_switch_does_not():
    episodes, steps = np.repeat(np.arange(200), 30), np.tile(np.arange(30), 200)
    shared = switch_latents(3, episodes, steps, 3, 2, 10, shared=True)
    own = switch_latents(3, episodes, steps, 3, 2, 10, shared=False)
    assert (shared == shared[:, :1]).all()
    assert 0.4 < (own[:, 0] == own[:, 1]).mean() < 0.6  # independent coins agree half the time
    for latents in (shared, own):
        assert 0.45 < latents.mean() < 0.55
        blocks = latents.reshape(200, 3, 10, 3)  # (episode, block, step in block, agent)
        assert (blocks == blocks[:, :, :1]).all()  # constant within a block of switch_every steps
    # a pure function of its arguments: the same rows in another order give the same latents
    order = np.random.default_rng(0).permutation(episodes.size)
    np.testing.assert_array_equal(switch_latents(3, episodes[order], steps[order], 3, 2, 10, True), shared[order])


def test_the_team_switch_policy_plays_the_latent_behaviour_of_each_agent():
    def constant(value):
        return lambda observations: np.full(observations.shape[:2] + (2,), value, "float32")

    observations = np.zeros((400, 2, 5), "float32")
    episodes, steps = np.arange(400), np.zeros(400, int)
    for shared in (True, False):
        policy = TeamSwitchPolicy([constant(-1.0), constant(1.0)], switch_every=10, shared_switch=shared, seed=0)
        actions = policy(observations, episodes=episodes, steps=steps)
        latents = switch_latents(0, episodes, steps, 2, 2, 10, shared)
        np.testing.assert_array_equal(actions[..., 0], np.where(latents == 1, 1.0, -1.0))
    with pytest.raises(ValueError, match="at least 2"):
        TeamSwitchPolicy([constant(0.0)], 10, True, 0)
