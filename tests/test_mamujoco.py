"""The gymnasium-robotics MaMuJoCo environment on OG-MARL's interface: its seeding state round-trips
through a checkpoint (a resumed run evaluates like an uninterrupted one), MuJoCo warnings go to stderr."""

from __future__ import annotations

import os

import numpy as np
import pytest

from og_marl_omsd.environments import make_plugin_environment
from og_marl_omsd.environments.mamujoco import SCENARIOS, make_mamujoco
from og_marl_omsd.runner import run as runner
from og_marl_omsd.support.checkpoints import StageCheckpoint

from conftest import (
    assert_same_results,
    results_of,
    run_config,
)

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


QUICK = "2halfcheetah-quick"


@pytest.fixture(scope="module")
def tiny_mamujoco_vault(tmp_path_factory):
    """Two 150-step random-action episodes of 2halfcheetah where the quick vault config reads ``Medium``."""
    from og_marl_omsd.datasets.generate import load_vault_config, location_of
    from og_marl_omsd.datasets.vaults import write_dataset
    from og_marl_omsd.environments.mamujoco import make_mamujoco

    vault_dir = str(tmp_path_factory.mktemp("mamujoco_vaults"))
    env = make_mamujoco("2halfcheetah", seed=0)
    rng = np.random.default_rng(0)
    fields = {key: [] for key in ("observations", "actions", "rewards", "terminals", "truncations", "state")}
    for _ in range(2):
        observations, info = env.reset()
        for step in range(150):
            actions = {agent: rng.uniform(-1, 1, env.num_actions).astype("float32") for agent in env.agents}
            next_observations, rewards, terminals, _, next_info = env.step(actions)
            fields["observations"].append([observations[a] for a in env.agents])
            fields["actions"].append([actions[a] for a in env.agents])
            fields["rewards"].append([rewards[a] for a in env.agents])
            fields["terminals"].append([float(terminals[a]) for a in env.agents])
            fields["truncations"].append([float(step == 149)] * env.num_agents)
            fields["state"].append(info["state"])
            observations, info = next_observations, next_info
    env.close()
    experience = {key: np.asarray(value, "float32") for key, value in fields.items() if key != "state"}
    experience["infos"] = {"state": np.asarray(fields["state"], "float32")}
    write_dataset(location_of(load_vault_config(QUICK), vault_dir), "Medium", experience)
    return vault_dir


@pytest.mark.slow
def test_resumed_mamujoco_run_evaluates_like_an_uninterrupted_one(tmp_path, tiny_mamujoco_vault, monkeypatch, capsys):
    common = [
        "system=omsd",
        "env=mamujoco",
        "task=2halfcheetah",
        f"task.vault_config={QUICK}",
        "dataset=Medium",
        "seed=1",
        "training_steps=10",
        "evaluation_every=5",
        "num_eval_episodes=1",
        "checkpoint_every=5",
        "system.critic_steps=5",
        "system.behaviour_steps=5",
        "system.jit_compile=false",
        "system.critic_hidden_sizes=[32,32]",
        "system.actor_hidden_sizes=[32,32]",
        "system.diffusion_width=16",
        "system.diffusion_hidden=32",
        "system.diffusion_time_dim=16",
        "replay.batch_size=32",
        f"vault_dir={tiny_mamujoco_vault}",
    ]
    reference = runner.run(
        run_config(*common, f"run_dir={tmp_path / 'reference'}", f"pretrained_dir={tmp_path / 'reference_cache'}")
    )
    interrupted = run_config(*common, f"run_dir={tmp_path / 'run'}", f"pretrained_dir={tmp_path / 'cache'}")
    real_save = StageCheckpoint.save

    def interrupted_after_actor_step_5(self, step, total):
        path = real_save(self, step, total)
        if self.label == "actors" and step == 5:
            raise KeyboardInterrupt("Ctrl-C right after the actors' checkpoint of step 5")
        return path

    monkeypatch.setattr(StageCheckpoint, "save", interrupted_after_actor_step_5)
    with pytest.raises(KeyboardInterrupt):
        runner.run(interrupted)  # evaluated at step 0 (one episode), then stopped
    monkeypatch.undo()
    capsys.readouterr()
    runner.run(run_config(*common, f"run_dir={tmp_path / 'run'}", f"pretrained_dir={tmp_path / 'cache'}"))
    assert "[resume] resuming actors from step 5" in capsys.readouterr().out  # with a new evaluation environment
    resumed = results_of(tmp_path / "run")
    assert [e["training_steps"] for e in resumed["evaluation_curve"]] == [0, 5, 10]
    assert_same_results(resumed, reference)  # the evaluations after the resume ran on the same episodes


@pytest.mark.slow
def test_mamujoco_seeding_state_round_trips():
    from og_marl_omsd.environments.mamujoco import make_mamujoco

    first, second = make_mamujoco("2halfcheetah", seed=5), make_mamujoco("2halfcheetah", seed=5)
    first.reset()
    state = first.checkpoint_state()
    second.restore_checkpoint_state(state)
    np.testing.assert_array_equal(first.reset()[1]["state"], second.reset()[1]["state"])
    assert state == {"resets": 1}


@pytest.mark.slow
def test_mujoco_warnings_go_to_stderr_not_to_the_working_directory(tmp_path, monkeypatch, capsys):
    import mujoco

    from og_marl_omsd.environments.mamujoco import make_mamujoco

    monkeypatch.chdir(tmp_path)
    env = make_mamujoco("2halfcheetah", seed=0)
    env.reset()
    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><joint type="slide"/><geom size=".1"/></body></worldbody></mujoco>'
    )
    data = mujoco.MjData(model)
    data.qpos[0] = np.nan
    mujoco.mj_step(model, data)
    env.close()
    assert "[mujoco] warning: Nan, Inf or huge value in QPOS" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
