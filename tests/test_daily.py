"""A researcher's daily use: progress lines, exported policies and evaluate, datasets that must be
generated first, provenance, and wandb grouping and resume."""

import glob
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from og_marl_omsd.support import progress
from og_marl_omsd.support.errors import UserError

from conftest import REPO_ROOT, run_config

pytestmark = pytest.mark.slow  # trains or runs whole runs: `pytest -m "not slow"` leaves it out

MAMUJOCO_TASKS = ("2halfcheetah", "6halfcheetah", "2ant", "4ant", "3hopper", "2walker")
PROGRESS_LINE = r"\[{stage}\] {done}/{total} \(\d+%\) \| [\d.]+ steps/s \| ETA \d+:\d\d:\d\d"


def cli(module, *arguments, cwd, extra_env=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(extra_env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *arguments], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


# ---------------------------------------------------------------------------- progress
@pytest.fixture
def plain_progress():
    progress.configure(every=0.0, mode="plain")
    yield
    progress.configure(every=30.0, mode="auto")
    progress.plan_run(None)


def test_progress_prints_k_of_n_rate_eta_and_the_run_eta(plain_progress):
    stream = io.StringIO()
    progress.plan_run({"critic": 10, "behaviour": 10, "actors": 20})
    bar = progress.Progress("actors", 20, start=4, stream=stream)  # a resumed stage; critic/behaviour were cached
    for step in range(8, 21, 4):  # called every K = 4 steps, with absolute step counts
        bar.update(step, {"losses/actor_loss": tf.constant(0.5)})
    bar.close()
    lines = stream.getvalue().splitlines()
    # the first line waits for a measured speed (the first update's includes the compilation)
    assert [re.match(r"\[actors\] (\d+)/20", line).group(1) for line in lines] == ["12", "16", "20"]
    assert all(re.match(PROGRESS_LINE.format(stage="actors", done=r"\d+", total=20), line) for line in lines)
    assert "actor_loss 0.5" in lines[0]
    # cached stages count as done: 10 + 10 + 12 of 40 steps at the first line
    assert re.search(r"run 80% ETA ~\d+:\d\d:\d\d", lines[0]) and "run 100%" in lines[-1]
    assert progress.format_duration(3725) == "1:02:05" and progress.format_duration(float("inf")) == "?"


def test_progress_prints_periodically_not_every_step(plain_progress):
    progress.configure(every=3600.0)
    stream = io.StringIO()
    bar = progress.Progress("critic_joint", 100, stream=stream)
    for step in range(1, 101):
        bar.update(step)
    # the first with a measured speed, and the last
    assert [line.split(" ")[1] for line in stream.getvalue().splitlines()] == ["2/100", "100/100"]


# ---------------------------------------------------------------------------- a finished run
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_vault_dir):
    """One captured CLI run (stdout is a pipe, as in a cluster log) on the 20k-step bandit vault."""
    tmp_path = tmp_path_factory.mktemp("finished")
    run_dir = tmp_path / "run"
    result = cli(
        "og_marl_omsd.run",
        "seed=2",
        "training_steps=20",
        "evaluation_every=10",
        "num_eval_episodes=3",
        "system.critic_steps=20",
        "system.behaviour_steps=20",
        "system.pretrain_log_every=10",
        f"vault_dir={small_vault_dir}",
        f"pretrained_dir={tmp_path / 'pretrained'}",
        f"run_dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result.stdout


def test_a_captured_run_shows_progress_of_every_stage_and_readable_evaluations(finished_run):
    _, output = finished_run
    for stage in ("critic_joint", "behaviour_sequential", "actors"):
        assert re.search(PROGRESS_LINE.format(stage=stage, done=20, total=20), output), output[-3000:]
    assert re.search(r"\[actors\] 20/20 .*\| run 100% ETA ~0:00:00", output)
    assert re.search(r"\[evaluation\] actors step 20/20: mean return \S+ \(min \S+, max \S+\)", output)
    assert "losses/actor_loss:" not in output  # no raw dict lines


def test_results_and_vaults_record_provenance(finished_run, small_vault_dir):
    from og_marl_omsd.support.provenance import collect

    run_dir, _ = finished_run
    results = json.loads((run_dir / "results.json").read_text())
    with open(os.path.join(small_vault_dir, "og_marl_omsd", "bandit", "2agent_gmm.vlt", "GMM", "metadata.json")) as f:
        stored = json.load(f)
    for record in (results["provenance"], stored.get("metadata", stored)["provenance"]):
        assert record["package"] == "og-marl-omsd" and record["package_version"]
        assert {"git_commit", "git_dirty"} <= set(record)
        for library in ("tensorflow", "dm-sonnet", "flashbax", "mujoco", "gymnasium-robotics"):
            assert record["versions"][library], library
    head = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # run from a checkout: its commit
        assert collect()["git_commit"] == results["provenance"]["git_commit"] == head.stdout.strip()
        assert isinstance(results["provenance"]["git_dirty"], bool)


def test_provenance_keeps_the_commit_a_process_started_with(monkeypatch):
    """A long run or generation records the commit of the code it imported, even when the
    checkout moves on (a commit made while it runs) before it writes its records."""
    from og_marl_omsd.support import provenance

    states = iter([{"git_commit": "a" * 40, "git_dirty": False}, {"git_commit": "b" * 40, "git_dirty": True}])
    monkeypatch.setattr(provenance, "_PINNED", None)
    monkeypatch.setattr(provenance, "git_state", lambda: next(states))
    assert provenance.pin()["git_commit"] == "a" * 40  # the process starts at commit a ...
    record = provenance.collect()  # ... and writes after the checkout moved to b
    assert (record["git_commit"], record["git_dirty"]) == ("a" * 40, False)
    assert provenance.pin()["git_commit"] == "a" * 40  # the first pin wins


def test_evaluate_reproduces_the_final_return_and_takes_options(finished_run, tmp_path, capsys):
    from og_marl_omsd.runner.evaluate import evaluate_run, main

    run_dir, _ = finished_run
    results = json.loads((run_dir / "results.json").read_text())
    assert results["final_evaluation_episodes"]["episodes"] == 30 and results["policy"] == "policy"
    result = cli("og_marl_omsd.evaluate", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "evaluations" / "seed2-episodes30-first0.json").read_text())
    assert record["evaluation"]["mean_episode_return"] == pytest.approx(
        results["final_evaluation"]["mean_episode_return"], abs=1e-6
    )
    assert record["evaluation"]["coordination_rate"] == results["final_evaluation"]["coordination_rate"]
    assert f"mean return {results['final_evaluation']['mean_episode_return']:.4f}" in result.stdout

    other = evaluate_run(str(run_dir), num_eval_episodes=4, seed=7)
    assert other["path"].endswith("seed7-episodes4-first0.json") and len(other["evaluation"]["episode_returns"]) == 4
    capsys.readouterr()
    for arguments, message in (
        ([str(tmp_path)], "is not a finished run"),
        ([str(run_dir), "episodes=3"], "Unknown argument 'episodes=3'"),
        ([str(run_dir), "seed=x"], "seed must be an integer"),
        ([str(run_dir), "video=true"], "MaMuJoCo tasks only"),
    ):
        assert main(arguments) == 2
        assert message in capsys.readouterr().err


def test_the_video_child_module_does_not_load_tensorflow():
    """The rendering child runs ``python -m og_marl_omsd.evaluate``: software EGL and TensorFlow
    crash together in one process, so importing the module must not import TensorFlow."""
    code = "import sys, og_marl_omsd.runner.evaluate; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


def test_video_replays_the_evaluated_episodes_into_one_file_each(tmp_path, monkeypatch):
    """video=true's recorder: each evaluated episode's joint actions are replayed in a child
    process with gymnasium's RecordVideo (software EGL here) into one mp4 per episode, as long
    as the episode; without moviepy the error says what to install."""
    import imageio_ffmpeg  # moviepy's ffmpeg, installed with it (the video extra, also in test)

    from og_marl_omsd.runner.evaluate import record_videos

    monkeypatch.setenv("MUJOCO_GL", "egl")
    rng = np.random.default_rng(0)
    episodes = [rng.uniform(-1, 1, (12, 2, 3)).astype("float32"), rng.uniform(-1, 1, (7, 2, 3)).astype("float32")]
    folder = tmp_path / "videos"
    record_videos("2halfcheetah", 0, 3, episodes, str(folder))
    files = sorted(os.listdir(folder))
    assert files == ["seed0-first3-episode-0.mp4", "seed0-first3-episode-1.mp4"]
    frames = [imageio_ffmpeg.count_frames_and_secs(str(folder / name))[0] for name in files]
    # the reset frame plus one per step; the last episode's last frame is not written (seen with
    # gymnasium 1.x's RecordVideo when close() ends the recording; noted in the README)
    assert frames[0] == 13 and frames[1] in (7, 8)
    monkeypatch.setitem(sys.modules, "moviepy", None)
    with pytest.raises(UserError, match="needs moviepy.*og-marl-omsd\\[video\\]"):
        record_videos("2halfcheetah", 0, 3, episodes, str(tmp_path / "none"))


def test_evaluate_replays_a_mamujoco_runs_final_evaluation_bit_for_bit(tmp_path):
    """Seeded resets and chaotic dynamics: only the same episodes and the same actor arithmetic
    give the same return (the evaluation at step 0 used reset 0, the final one resets 1-10)."""
    from og_marl_omsd.datasets.generate import ensure_datasets
    from og_marl_omsd.runner.evaluate import evaluate_run
    from og_marl_omsd.runner.run import run

    vault_dir = str(tmp_path / "vaults")
    ensure_datasets("2halfcheetah-quick", ["Random"], vault_dir)  # no MATD3 needed for Random
    results = run(
        run_config(
            "env=mamujoco",
            "task.vault_config=2halfcheetah-quick",
            "dataset=Random",
            "seed=1",
            "training_steps=2",
            "evaluation_every=2",
            "num_eval_episodes=1",
            "system.critic_steps=2",
            "system.behaviour_steps=2",
            "system.actor_hidden_sizes=[16]",
            "system.critic_hidden_sizes=[16]",
            "system.diffusion_width=16",
            "system.diffusion_hidden=16",
            f"vault_dir={vault_dir}",
            f"run_dir={tmp_path / 'run'}",
            f"pretrained_dir={tmp_path / 'pretrained'}",
        )
    )
    assert results["final_evaluation_episodes"] == {"episodes": 10, "seed": 1, "first_episode": 1}
    again = evaluate_run(str(tmp_path / "run"))
    assert again["first_episode"] == 1 and again["episodes"] == 10
    for statistic in ("mean_episode_return", "min_episode_return", "max_episode_return"):
        assert again["evaluation"][statistic] == results["final_evaluation"][statistic]


class _StubEnvironment:
    """The shapes a system reads from an environment: 3 agents, 5 observations, 2 actions."""

    agents = ["agent_0", "agent_1", "agent_2"]
    num_actions = 2
    observation_shape = (5,)
    state_shape = (7,)


@pytest.mark.parametrize("name, options", [("omsd", {}), ("omsd", {"shared_actor": True}), ("brpo_jal", {})])
def test_saved_model_gives_the_actors_actions(name, options, tmp_path):
    from og_marl_omsd.runner.policy import NumpyActors, export_system, load_policy
    from og_marl_omsd.runner.registry import load_system

    system = load_system(name)(
        _StubEnvironment(),
        None,
        seed=3,
        actor_hidden_sizes=(8,),
        jit_compile=False,
        critic_hidden_sizes=(8,),
        diffusion_width=8,
        diffusion_hidden=8,
        diffusion_blocks=1,
        diffusion_time_dim=8,
        **options,
    )
    export_system(system, str(tmp_path))
    observations = np.random.default_rng(0).normal(size=(4, 3, 5)).astype("float32")
    expected = system.actors(tf.constant(observations)).numpy()

    loaded = tf.saved_model.load(str(tmp_path / "policy"))  # plain TF, no plugin code needed
    np.testing.assert_allclose(loaded(tf.constant(observations)).numpy(), expected, rtol=1e-6, atol=1e-6)
    served = loaded.signatures["serving_default"](observations=tf.constant(observations))["actions"]
    np.testing.assert_allclose(served.numpy(), expected, rtol=1e-6, atol=1e-6)
    # The run's evaluations act through NumpyActors: the TF actors' maths to float32 rounding ...
    acting = NumpyActors.of(system.actors)
    assert acting.kind == {"omsd": "shared" if options else "per_agent", "brpo_jal": "centralised"}[name]
    np.testing.assert_allclose(acting(observations), expected, rtol=1e-5, atol=1e-6)
    policy = load_policy(str(tmp_path))
    assert policy.info["acting"] == "numpy" and policy.numpy_actors is not None
    # ... and the loaded policy acts with the same weights and code: bit for bit (evaluate reproduces runs).
    np.testing.assert_array_equal(policy.actions(observations), acting(observations))
    actions = policy.select_actions({agent: observations[0, i] for i, agent in enumerate(_StubEnvironment.agents)})
    np.testing.assert_allclose(np.stack([actions[a] for a in _StubEnvironment.agents]), expected[0], atol=1e-6)
    assert policy.info["agents"] == _StubEnvironment.agents and policy.info["action_dim"] == 2


# ---------------------------------------------------------------------------- datasets of every task
@pytest.mark.parametrize("task", MAMUJOCO_TASKS)
def test_task_without_generated_data_stops_with_the_generate_command(task, tmp_path):
    from og_marl_omsd.runner.run import run

    vault_dir = tmp_path / "vaults"
    with pytest.raises(UserError) as error:
        run(
            run_config(
                "env=mamujoco",
                f"task={task}",
                f"vault_dir={vault_dir}",
                f"runs_root={tmp_path / 'runs'}",
                f"pretrained_dir={tmp_path / 'runs' / 'pretrained'}",
            )
        )
    assert f"python -m og_marl_omsd.datasets generate {task} --vault-dir {vault_dir}" in str(error.value)
    assert not vault_dir.exists() and not (tmp_path / "runs").exists()  # nothing generated or written


def test_cli_on_missing_big_dataset_exits_2_with_the_command(tmp_path):
    result = cli("og_marl_omsd.run", "env=mamujoco", "task=6halfcheetah", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "python -m og_marl_omsd.datasets generate 6halfcheetah\n" in result.stderr
    assert not (tmp_path / "vaults").exists()


@pytest.mark.parametrize("task", MAMUJOCO_TASKS)
def test_every_task_has_a_valid_full_and_quick_vault_config(task):
    from og_marl_omsd.datasets.availability import generates_on_first_use
    from og_marl_omsd.datasets.generate import MaMuJoCoDatasets, load_vault_config, location_of

    for name, on_first_use in ((task, False), (f"{task}-quick", True)):
        config = load_vault_config(name)
        datasets = MaMuJoCoDatasets(config, location_of(config))  # keys, policies and scenario are checked
        assert config["scenario"] == task and set(config["datasets"]) >= {"Random", "Medium", "Medium-Replay", "Expert"}
        assert generates_on_first_use(config) is on_first_use
        if not on_first_use:
            assert datasets.behaviour_config.target_return > 0 and config["transitions"] == 1_000_000
    assert load_vault_config(run_config("env=mamujoco", f"task={task}").task.vault_config)["name"] == task
    assert generates_on_first_use(load_vault_config("bandit"))


# ---------------------------------------------------------------------------- wandb
def test_wandb_keeps_one_run_across_a_kill_and_resume_with_group_and_name(tmp_path, small_vault_dir, monkeypatch):
    pytest.importorskip("wandb")
    from test_resume import kill_at_checkpoint

    from og_marl_omsd.runner.tracking import wandb_settings

    overrides = [
        "seed=4",
        "training_steps=40",
        "evaluation_every=20",
        "num_eval_episodes=1",
        "checkpoint_every=10",
        "system.critic_steps=20",
        "system.behaviour_steps=20",
        "system.pretrain_log_every=10",
        "logger.wandb=true",
        f"vault_dir={small_vault_dir}",
        f"pretrained_dir={tmp_path / 'pretrained'}",
        f"run_dir={tmp_path / 'run'}",
    ]
    monkeypatch.setenv("WANDB_MODE", "offline")
    kill_at_checkpoint(overrides, "actors", tmp_path)
    resumed = cli("og_marl_omsd.run", *overrides, cwd=tmp_path)
    assert resumed.returncode == 0 and "[resume] resuming actors" in resumed.stdout, resumed.stderr[-3000:]
    run_id = (tmp_path / "run" / "wandb_run_id").read_text().strip()
    runs = sorted(glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*")))
    assert len(runs) == 2 and all(path.endswith(f"-{run_id}") for path in runs), runs  # one wandb run, two sessions

    settings = wandb_settings(run_config(*overrides), str(tmp_path / "run"), "GMM")
    assert settings["name"] == "omsd-bandit-GMM-seed4" and settings["group"].startswith("omsd-bandit-bandit-GMM-")
    other_seed = wandb_settings(run_config(*overrides, "seed=5"), str(tmp_path / "other"), "GMM")
    other_beta = wandb_settings(run_config(*overrides, "system.beta=0.2"), str(tmp_path / "other2"), "GMM")
    assert other_seed["group"] == settings["group"] != other_beta["group"]
    # The resumed session's offline record carries the id, group and name (the killed session's
    # record may be cut short: SIGKILL can land before wandb flushed it; its folder names the id).
    data = open(glob.glob(os.path.join(runs[-1], "run-*.wandb"))[0], "rb").read()
    assert all(text.encode() in data for text in (run_id, settings["group"], settings["name"]))


def test_diagnose_checks_a_finished_runs_pretrained_parts_without_training(finished_run, capsys):
    """baselines/diagnose.py's library: the run's critic and behaviour model come from its
    pretrained cache (nothing trained), and both checks return measures in range."""
    from og_marl_omsd.comparison.diagnose import diagnose_run

    run_dir, _ = finished_run
    capsys.readouterr()
    result = diagnose_run(str(run_dir), horizon=1)  # bandit episodes are one step long
    out = capsys.readouterr().out
    assert out.count("loaded from cache") == 2 and "training" not in out
    assert result["critic_kind"] == "joint" and result["factorisation"] == "sequential"
    critic, behaviour = result["critic"], result["behaviour"]
    assert critic["pairs"] > 100 and -1.0 <= critic["correlation"] <= 1.0
    assert 0.0 <= behaviour["ood_share_samples"] <= 1.0 and behaviour["denoising_steps"] == 20
