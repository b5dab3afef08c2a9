"""og_marl_omsd.run's helpers: the reward scale the runner gives the critic."""

import numpy as np
import pytest

from og_marl_omsd.errors import UserError
from og_marl_omsd.run import default_run_dir, reward_scale

from conftest import run_config


def test_reward_scaling_is_a_task_switch():
    """MaMuJoCo scales the team reward by 1000 / (max - min episode return) (SRPO/IQL);
    ``task.reward_normalisation=none`` turns it off (the authors' raw rewards), and is its own run."""
    returns = np.array([100.0, 350.0, 600.0])
    scaled = run_config("env=mamujoco")
    raw = run_config("env=mamujoco", "task.reward_normalisation=none")
    assert reward_scale(scaled.task, returns) == pytest.approx(2.0)
    assert reward_scale(raw.task, returns) == 1.0
    assert reward_scale(scaled.task, np.array([5.0, 5.0])) == 1.0  # no spread: nothing to scale by
    assert default_run_dir(raw, "D") != default_run_dir(scaled, "D")
    with pytest.raises(UserError, match="reward_normalisation must be 'none' or 'episode_return_range'"):
        reward_scale(run_config("env=mamujoco", "task.reward_normalisation=max").task, returns)


def test_a_run_made_before_the_later_hyperparameters_is_still_the_same_run(tmp_path):
    """A run directory whose config.yaml predates behaviour_seed / behaviour_condition resumes with
    them at their defaults, and is refused with them set."""
    from omegaconf import OmegaConf

    from og_marl_omsd.run import check_same_run
    from og_marl_omsd.systems.defaults import ADDED_AFTER_PIN

    cfg = run_config("system=brpo_fac", "env=bandit")
    old = OmegaConf.to_container(cfg, resolve=True)
    for name in ADDED_AFTER_PIN:
        del old["system"][name]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(old)))
    check_same_run(cfg, "GMM", str(tmp_path))
    with pytest.raises(UserError, match="system.behaviour_seed: '<unset>' there, 3 now"):
        check_same_run(run_config("system=brpo_fac", "env=bandit", "system.behaviour_seed=3"), "GMM", str(tmp_path))
