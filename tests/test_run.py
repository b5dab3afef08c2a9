"""og_marl_omsd.runner.run's helpers: the reward scale the runner gives the critic; one setting scales every
stage's budget, and a run on another vault config's data (the quick one) says so in its path and its
final line (issue 22)."""

import numpy as np
import pytest

from og_marl_omsd.runner import run as runner
from og_marl_omsd.runner.run import default_run_dir, reward_scale
from og_marl_omsd.support.errors import UserError

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

    from og_marl_omsd.runner.run import check_same_run
    from og_marl_omsd.systems.defaults import ADDED_AFTER_PIN

    cfg = run_config("system=brpo_fac", "env=bandit")
    old = OmegaConf.to_container(cfg, resolve=True)
    for name in ADDED_AFTER_PIN:
        del old["system"][name]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(old)))
    check_same_run(cfg, "GMM", str(tmp_path))
    with pytest.raises(UserError, match="system.behaviour_seed: '<unset>' there, 3 now"):
        check_same_run(run_config("system=brpo_fac", "env=bandit", "system.behaviour_seed=3"), "GMM", str(tmp_path))


def test_budget_scale_scales_every_stage_and_the_evaluation_period(tmp_path):
    cfg = run_config("budget_scale=0.01", f"runs_root={tmp_path}")
    runner.plan_run(cfg)
    assert (cfg.system.critic_steps, cfg.system.behaviour_steps, cfg.training_steps) == (20, 30, 6)
    assert cfg.evaluation_every == 2 and cfg.num_eval_episodes == 1  # as many evaluations, each smaller
    first = runner.plan_run(cfg)[3]
    assert cfg.training_steps == 6 and runner.plan_run(cfg)[3] == first  # once per config
    assert first != runner.plan_run(run_config(f"runs_root={tmp_path}"))[3]  # a run of its own
    same = ["training_steps=6", "evaluation_every=2", "num_eval_episodes=1", "system.critic_steps=20"]
    explicit = run_config(*same, "system.behaviour_steps=30", f"runs_root={tmp_path}")
    assert runner.plan_run(explicit)[3] == first  # the scaled budgets are the run, not the scale


def test_budget_scale_keeps_a_stage_that_is_off_off_and_at_least_one_step(tmp_path):
    cfg = run_config("budget_scale=1e-9", "system.behaviour_steps=0", f"runs_root={tmp_path}")
    runner.plan_run(cfg)
    assert (cfg.system.critic_steps, cfg.system.behaviour_steps, cfg.training_steps) == (1, 0, 1)


@pytest.mark.parametrize("value", ["0", "-1", "inf"])
def test_bad_budget_scale_is_refused(value, tmp_path):
    with pytest.raises(UserError, match=r"budget_scale must be a finite number > 0"):
        runner.plan_run(run_config(f"budget_scale={value}", f"runs_root={tmp_path}"))
    assert not any(tmp_path.iterdir())


def test_a_run_on_the_quick_vault_says_so_in_its_path_and_final_line(tmp_path, capsys):
    quick = run_config("env=mamujoco", "task=2ant", "task.vault_config=2ant-quick", f"runs_root={tmp_path}")
    real = run_config("env=mamujoco", "task=2ant", f"runs_root={tmp_path}")
    assert "/mamujoco-2ant/Medium@2ant-quick/seed0-" in runner.plan_run(quick)[3]
    assert "/mamujoco-2ant/Medium/seed0-" in runner.plan_run(real)[3]
    evaluation = [{"mean_episode_return": 1.0}]
    results = runner.run_results(quick, "Medium", "standalone", evaluation, {}, wall_time_seconds=1.0)
    assert results["vault_config"] == "2ant-quick"
    assert "vault_config" not in runner.run_results(real, "Medium", "standalone", evaluation, {}, wall_time_seconds=1)
    runner.print_summary(results)
    assert "2ant/Medium on vault config 2ant-quick (quick data for smoke runs" in capsys.readouterr().out
