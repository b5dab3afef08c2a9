"""og_marl_omsd.runner.evaluate: it reproduces a run's final return (bandit, and MaMuJoCo bit for bit) and
records videos; bad input and a damaged SavedModel are one paragraph, exit 2, nothing written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from og_marl_omsd.runner import evaluate
from og_marl_omsd.support.errors import UserError

from conftest import REPO_ROOT, run_config, run_module


@pytest.mark.parametrize("seed", ["-1", "2147483648"])
def test_seed_out_of_range_is_refused(seed):
    with pytest.raises(UserError, match=r"seed must be a whole number in \[0, 2147483647\]"):
        evaluate.parse_arguments(["runs/x", f"seed={seed}"])


def _run_with_damaged_policy(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "policy" / "variables").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(
        "seed: 0\nnum_eval_episodes: 1\ntask: {source: og_marl_omsd, env_name: bandit, scenario: 2agent_gmm}\n"
    )
    (run_dir / "results.json").write_text(json.dumps({"final_evaluation": {"mean_episode_return": 0.5}}))
    (run_dir / "policy" / "policy.json").write_text(json.dumps({"agents": ["agent_0", "agent_1"]}))
    (run_dir / "policy" / "saved_model.pb").write_bytes(b"\x08\xff damaged bytes")
    return run_dir


def test_damaged_saved_model_is_one_paragraph_and_nothing_is_written(tmp_path, capsys):
    run_dir = _run_with_damaged_policy(tmp_path)
    assert evaluate.main([str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: The exported policy {run_dir / 'policy'} cannot be loaded:"), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (run_dir / "evaluations").exists()


def test_damaged_results_json_is_one_paragraph(tmp_path, capsys):
    run_dir = _run_with_damaged_policy(tmp_path)
    (run_dir / "results.json").write_text("{truncated")
    assert evaluate.main([str(run_dir), "seed=1"]) == 2
    assert "results.json cannot be read" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_reproduces_the_final_return_and_takes_options(finished_run, tmp_path, capsys):
    from og_marl_omsd.runner.evaluate import evaluate_run, main

    run_dir, _ = finished_run
    results = json.loads((run_dir / "results.json").read_text())
    assert results["final_evaluation_episodes"]["episodes"] == 30 and results["policy"] == "policy"
    result = run_module("og_marl_omsd.evaluate", str(run_dir), cwd=tmp_path)
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


@pytest.mark.slow
def test_the_video_child_module_does_not_load_tensorflow():
    """The rendering child runs ``python -m og_marl_omsd.evaluate``: software EGL and TensorFlow
    crash together in one process, so importing the module must not import TensorFlow."""
    code = "import sys, og_marl_omsd.runner.evaluate; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


@pytest.mark.slow
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


@pytest.mark.slow
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
