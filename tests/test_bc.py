"""BC: the comparison's behaviour-cloning baseline learns what the bandit's data does."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import bandit_location, run_config
from test_cli import run_cli


def bc_run(tmp_path, vault_dir, *extra):
    from og_marl_omsd.runner import run as runner

    overrides = [
        "system=bc",
        "training_steps=400",
        "evaluation_every=400",
        "num_eval_episodes=2",
        "system.actor_learning_rate=3e-3",
        f"vault_dir={vault_dir}",
        f"runs_root={tmp_path / 'runs'}",
        f"pretrained_dir={tmp_path / 'pretrained'}",
        *extra,
    ]
    return runner.run(run_config(*overrides))


@pytest.fixture(scope="module")
def one_mode_vault_dir(tmp_path_factory) -> str:
    """A bandit dataset whose joint actions come from the (0.8, 0.8) mode only."""
    from og_marl_omsd.datasets.vaults import write_dataset
    from og_marl_omsd.environments.bandit import generate_bandit_experience

    experience = generate_bandit_experience(20_000, seed=0)
    actions = np.clip(0.8 + 0.3 * np.random.default_rng(1).standard_normal((20_000, 2, 1)), -1, 1).astype("float32")
    experience["actions"] = actions
    vault_dir = str(tmp_path_factory.mktemp("one_mode"))
    write_dataset(bandit_location(vault_dir), "GMM", experience)
    return vault_dir


def test_bc_learns_the_mode_of_one_mode_data(tmp_path, one_mode_vault_dir):
    results = bc_run(tmp_path, one_mode_vault_dir)
    final = results["final_evaluation"]
    target = np.clip(0.8 + 0.3 * np.random.default_rng(1).standard_normal(200_000), -1, 1).mean()  # ~0.77
    assert final["mean_action_agent_0"] == pytest.approx(target, abs=0.08)
    assert final["mean_action_agent_1"] == pytest.approx(target, abs=0.08)
    assert final["coordination_rate"] == 1.0
    assert results["stage_steps"] == {"actors": 400} and results["pretrained_cache_keys"] == {}
    assert not os.path.isdir(tmp_path / "pretrained") or not [
        name for name in os.listdir(tmp_path / "pretrained") if not name.startswith(".")
    ]  # nothing pretrained


def test_bc_regresses_to_the_mean_between_two_modes(tmp_path, small_vault_dir):
    """Deterministic BC minimises the squared error: on the symmetric two-mode data that is the
    mixture's mean, (0, 0), between the modes (why the field pairs BC with value-based methods)."""
    final = bc_run(tmp_path, small_vault_dir)["final_evaluation"]
    assert abs(final["mean_action_agent_0"]) < 0.15 and abs(final["mean_action_agent_1"]) < 0.15
    assert abs(final["mean_episode_return"]) < 0.05


def test_bc_takes_no_beta_and_an_env_preset_beta_is_left_out(tmp_path, small_vault_dir):
    from og_marl_omsd.comparison.jobs import has_beta
    from og_marl_omsd.runner import run as runner

    assert not has_beta("bc") and has_beta("omsd")
    cfg = run_config("system=bc", f"vault_dir={small_vault_dir}", f"runs_root={tmp_path / 'runs'}")
    assert "beta" in cfg.system  # the bandit preset sets it for the score-regularised systems
    _, params, _, run_dir = runner.plan_run(cfg)
    assert "beta" not in params and "beta" not in cfg.system and "critic_steps" not in cfg.system
    assert params["actor_hidden_sizes"] == [64, 64]  # the preset's actor size, as every system gets
    assert (
        runner.plan_run(run_config("system=bc", f"vault_dir={small_vault_dir}", f"runs_root={tmp_path / 'runs'}"))[3]
        == run_dir
    )
    # On the command line a key BC does not take is an error, preset or not.
    for override in ("+system.betta=1", "system.beta=0.1"):
        result = run_cli(
            "system=bc", override, f"vault_dir={small_vault_dir}", f"runs_root={tmp_path / 'cli'}", cwd=tmp_path
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"unknown parameter system.{override.split('=')[0].split('.')[-1]}" in result.stderr
    assert not (tmp_path / "cli").exists()
