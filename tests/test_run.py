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
