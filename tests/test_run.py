"""og_marl_omsd.runner.run: the reward scale, budget scale, run directories (a function of the command,
one run per directory, one process at a time), resume after SIGKILL in every stage to the same end,
a changed dataset never served, Ctrl-C and a full disk, exit codes and failure reports, determinism."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from og_marl_omsd.runner import run as runner
from og_marl_omsd.runner.registry import load_system
from og_marl_omsd.runner.run import default_run_dir, reward_scale
from og_marl_omsd.support.errors import NonFiniteLossError, UserError

from conftest import (
    SMALL_RUN,
    assert_same_results,
    bandit_location,
    dead_pid,
    fast_overrides,
    interrupt_at,
    kill_at_checkpoint,
    resumed_step,
    run_config,
    start_run_merged,
)


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


@pytest.mark.slow
def test_float_and_integer_spellings_get_one_run_directory(tmp_path):

    directories = set()
    for spelling in ("1e6", "1000000", "1000000.0"):
        cfg = run_config(f"system.critic_steps={spelling}", f"runs_root={tmp_path}")
        runner.configured_system_parameters(cfg, load_system("omsd"))
        assert cfg.system.critic_steps == 1000000 and isinstance(cfg.system.critic_steps, int)
        directories.add(runner.default_run_dir(cfg, "GMM"))
    assert len(directories) == 1


@pytest.mark.slow
def test_ctrl_c_prints_one_line_without_a_traceback(tmp_path, small_vault_dir):
    overrides = [
        *SMALL_RUN,
        f"vault_dir={small_vault_dir}",
        f"run_dir={tmp_path / 'run'}",
        f"pretrained_dir={tmp_path / 'cache'}",
    ]
    code, out, err = interrupt_at(overrides, "[checkpoint] critic_joint step 5/", tmp_path, sig=signal.SIGINT)
    assert code == 130, out[-2000:] + err[-3000:]
    assert "Traceback" not in out + err
    assert [line for line in err.splitlines() if line.startswith("Interrupted")] == [runner.INTERRUPTED]


@pytest.mark.slow
def test_full_disk_writing_results_is_one_paragraph_and_resumable(
    tmp_path, small_vault_dir, reference, monkeypatch, capsys
):
    expected, _, reference_cache = reference
    cache = tmp_path / "cache"
    shutil.copytree(reference_cache, cache)
    leftover = cache / f"critic_joint-0000.partial-{dead_pid()}"
    leftover.mkdir()
    overrides = [*SMALL_RUN, f"vault_dir={small_vault_dir}", f"run_dir={tmp_path / 'run'}", f"pretrained_dir={cache}"]
    real_write_json = runner.write_json

    def disk_full(path, data, indent=2):
        if path.endswith("results.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        real_write_json(path, data, indent)

    monkeypatch.setattr(runner, "write_json", disk_full)
    with pytest.raises(OSError) as error:
        runner.run(run_config(*overrides))
    code, message = runner.failure_report(error.value)
    assert code == 3 and "No space left on device" in message and "run the same command again" in message
    assert "\n" not in message
    monkeypatch.undo()
    capsys.readouterr()
    results = runner.run(run_config(*overrides))
    assert "[resume] resuming actors from step 10" in capsys.readouterr().out
    assert_same_results(results, expected)
    assert not any(name.startswith(".") for name in os.listdir(tmp_path / "run") if name != ".lock")


def test_main_maps_errors_to_exit_codes_and_full_error_shows_the_traceback(monkeypatch, capsys):
    main = runner.main.__wrapped__  # without hydra's decorator
    for error, code, prefix in (
        (UserError("bad input"), 2, "Error: bad input"),
        (NonFiniteLossError("nan at step 3"), 3, "Stopped: nan at step 3"),
    ):

        def fail(cfg, error=error):
            raise error

        monkeypatch.setattr(runner, "run", fail)
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        with pytest.raises(SystemExit) as exit_info:
            main(OmegaConf.create({"logger": {"verbose": False}}))
        assert exit_info.value.code == code and capsys.readouterr().err.strip() == prefix
        monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
        with pytest.raises(type(error)):
            main(OmegaConf.create({"logger": {"verbose": False}}))


@pytest.mark.parametrize(
    "code,said,not_said",
    [
        (errno.EACCES, "a permission problem", "disk (or quota) is full"),
        (errno.EROFS, "read-only", "disk (or quota) is full"),
        (errno.ENOSPC, "disk (or quota) is full", "permission"),
    ],
)
def test_failure_report_names_an_os_error_as_what_it_is_with_its_path(code, said, not_said):
    error = OSError(code, os.strerror(code), "/somewhere/run/metrics.json")
    exit_code, message = runner.failure_report(error)
    assert exit_code == 3 and said in message and not_said not in message and "/somewhere/run/metrics.json" in message
    assert os.strerror(code) in message and "\n" not in message


def _losses(output: str, prefix: str, count: int = 5) -> list:
    """Step and losses of the stage's first progress lines (``[stage] k/N (..%) | rate | ETA | elapsed | losses``)."""
    lines = [line.split(" | ") for line in output.splitlines() if line.startswith(f"[{prefix}] ")]
    return [(parts[0].split(" (")[0], parts[4]) for parts in lines[:count]]


@pytest.mark.slow
def test_same_seed_same_losses_and_return_different_seed_differs(tmp_path, small_vault_dir, capsys):
    """On the CPU with XLA as in production: two runs of seed 3 train identically (and a third,
    served from the pretrained cache, ends identically); seed 4 differs."""
    outputs, results = {}, {}
    for label, seed, cache in (("a", 3, "cache_a"), ("b", 3, "cache_b"), ("cached", 3, "cache_a"), ("other", 4, "c")):
        overrides = fast_overrides(
            tmp_path,
            small_vault_dir,
            f"seed={seed}",
            f"run_dir={tmp_path / label}",
            f"pretrained_dir={tmp_path / cache}",
            "system.pretrain_log_every=1",
            "logger.progress_every=0",
            "system.steps_per_call=1",
            jit=True,
        )
        results[label] = runner.run(run_config(*overrides))
        outputs[label] = capsys.readouterr().out
    for prefix in ("critic_joint", "behaviour_sequential", "actors"):
        first = _losses(outputs["a"], prefix)
        assert len(first) == 5 and first == _losses(outputs["b"], prefix), prefix
        assert first != _losses(outputs["other"], prefix), prefix
    assert _losses(outputs["a"], "actors") == _losses(outputs["cached"], "actors")
    keys = results["a"]["pretrained_cache_keys"]
    assert (
        f"loaded from cache {tmp_path / 'cache_a'}" in outputs["cached"]
        and f"(key {keys['critic']})" in outputs["cached"]
    )
    assert f"(cache key {keys['behaviour']})" in outputs["a"]
    final = {label: r["final_evaluation"]["mean_episode_return"] for label, r in results.items()}
    assert final["a"] == final["b"] == final["cached"] != final["other"]


@pytest.mark.slow
def test_sigkill_in_every_stage_resumes_to_the_same_end_as_an_uninterrupted_run(tmp_path, small_vault_dir):
    common = [
        "system=omsd",
        "env=bandit",
        "seed=3",
        "training_steps=40",
        "evaluation_every=20",
        "num_eval_episodes=1",
        "checkpoint_every=10",
        "system.critic_steps=40",
        "system.behaviour_steps=40",
        "system.pretrain_log_every=20",
        f"vault_dir={small_vault_dir}",
    ]
    interrupted = [*common, f"run_dir={tmp_path / 'interrupted'}", f"pretrained_dir={tmp_path / 'cache_interrupted'}"]

    kill_at_checkpoint(interrupted, "critic_joint", tmp_path)
    second = kill_at_checkpoint(interrupted, "behaviour_sequential", tmp_path)
    assert resumed_step(second, "critic_joint") in (10, 20, 30)
    third = kill_at_checkpoint(interrupted, "actors", tmp_path)
    assert "critic_joint: loaded from cache" in third and resumed_step(third, "behaviour_sequential") in (10, 20, 30)
    process = start_run_merged(interrupted, tmp_path)
    final_output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, final_output[-3000:]
    assert resumed_step(final_output, "actors") in (10, 20, 30)
    assert "Steps: critic_joint 40, behaviour_sequential 40, actors 40" in final_output

    reference = runner.run(
        run_config(*common, f"run_dir={tmp_path / 'reference'}", f"pretrained_dir={tmp_path / 'cache_reference'}")
    )
    resumed = json.loads((tmp_path / "interrupted" / "results.json").read_text())
    assert (
        resumed["stage_steps"]
        == reference["stage_steps"]
        == {"critic_joint": 40, "behaviour_sequential": 40, "actors": 40}
    )
    assert [e["training_steps"] for e in resumed["evaluation_curve"]] == [0, 20, 40]
    assert resumed["evaluation_curve"] == reference["evaluation_curve"]  # bit for bit: all random state resumed
    assert resumed["pretrained_cache_keys"] == reference["pretrained_cache_keys"]
    metrics = json.loads((tmp_path / "interrupted" / "metrics.json").read_text())
    ((algorithm, seeds),) = metrics["bandit"]["bandit-GMM"].items()
    assert algorithm.startswith("omsd@beta=")
    assert sorted(seeds["seed_3"]) == ["absolute_metrics", "step_0", "step_1"]  # steps 20 and 40
    assert len(seeds["seed_3"]["step_1"]["episode_return"]) == reference["final_evaluation_episodes"]["episodes"]

    again = subprocess.run(
        [sys.executable, "-m", "og_marl_omsd.run", *interrupted],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert again.returncode == 0 and "Run already complete" in again.stdout
    assert f"Final mean return: {resumed['final_evaluation']['mean_episode_return']:.4f}" in again.stdout
    assert "[pretrain]" not in again.stdout


@pytest.mark.slow
def test_default_run_dir_is_a_function_of_the_command(tmp_path):
    base = ["training_steps=20", f"runs_root={tmp_path}"]
    same = runner.default_run_dir(run_config(*base), "GMM")
    assert same == runner.default_run_dir(run_config(*base, "checkpoint_every=7", "logger.terminal_log_every=1"), "GMM")
    assert same.startswith(str(tmp_path / "omsd" / "bandit-bandit" / "GMM" / "seed0-"))
    assert same != runner.default_run_dir(run_config(*base, "seed=1"), "GMM")
    assert same != runner.default_run_dir(run_config(*base, "system.beta=0.7"), "GMM")


@pytest.mark.slow
def test_run_dir_of_another_run_is_refused_and_left_alone(tmp_path, small_vault_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stored = run_config("training_steps=20", f"vault_dir={small_vault_dir}", f"run_dir={run_dir}")
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(stored, resolve=True))
    (run_dir / "results.json").write_text("{}")
    with pytest.raises(UserError, match=r"holds a different run \(training_steps: 20 there, 30 now\)"):
        runner.run(run_config("training_steps=30", f"vault_dir={small_vault_dir}", f"run_dir={run_dir}"))
    assert sorted(os.listdir(run_dir)) == ["config.yaml", "results.json"]


@pytest.mark.slow
def test_second_process_in_the_same_run_dir_is_refused(tmp_path):
    held = runner._lock_run_dir(str(tmp_path))
    try:
        with pytest.raises(UserError, match="Another process is running in"):
            runner._lock_run_dir(str(tmp_path))
    finally:
        held.close()
    runner._lock_run_dir(str(tmp_path)).close()  # free again once the holder is gone


def _write_gmm(vault_dir, seed):
    """Dataset GMM of the bandit under ``vault_dir`` (replacing one that is there) from ``seed``."""
    import shutil

    from og_marl_omsd.datasets.vaults import write_dataset
    from og_marl_omsd.environments.bandit import generate_bandit_experience

    location = bandit_location(str(vault_dir))
    shutil.rmtree(location.dataset_path("GMM"), ignore_errors=True)
    write_dataset(location, "GMM", generate_bandit_experience(3000, seed=seed))


@pytest.mark.slow
def test_run_on_a_changed_dataset_never_returns_or_continues_the_old_work(tmp_path, capsys):
    vaults, run_dir = tmp_path / "vaults", tmp_path / "run"
    _write_gmm(vaults, seed=0)
    overrides = [
        "training_steps=4",
        "evaluation_every=2",
        "num_eval_episodes=1",
        "checkpoint_every=2",
        "system.critic_steps=4",
        "system.behaviour_steps=4",
        f"vault_dir={vaults}",
        f"run_dir={run_dir}",
        f"pretrained_dir={tmp_path / 'cache'}",
    ]
    first = runner.run(run_config(*overrides))
    results = (run_dir / "results.json").read_text()
    _write_gmm(vaults, seed=1)  # another complete dataset under the same name
    capsys.readouterr()

    with pytest.raises(UserError, match=r"changed since the run in .* was made: .*Its results belong to the old data"):
        runner.run(run_config(*overrides))  # finished: never the old result
    assert "Run already complete" not in capsys.readouterr().out
    assert (run_dir / "results.json").read_text() == results

    (run_dir / "results.json").unlink()  # as if killed in the actor stage: its checkpoints are there
    for record in ("dataset.json", None):  # the run directory's record, else the checkpoints' own
        with pytest.raises(UserError, match=r"changed since the run in .* was started: .*Its checkpoints belong"):
            runner.run(run_config(*overrides))
        assert "[resume] resuming" not in capsys.readouterr().out
        if record:
            (run_dir / record).unlink()
    assert not (run_dir / "results.json").exists()

    _write_gmm(vaults, seed=0)  # the data it was made from, back: the run resumes to the same end
    resumed = runner.run(run_config(*overrides))
    assert "[resume] resuming actors from step 4" in capsys.readouterr().out
    assert resumed["evaluation_curve"] == first["evaluation_curve"]
    assert (
        json.loads((run_dir / "dataset.json").read_text())["fingerprint"] == first["dataset_statistics"]["fingerprint"]
    )
