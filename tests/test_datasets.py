"""MaMuJoCo dataset generation (vault_configs/2halfcheetah-quick.yaml), safe writes, resume, describe;
parallel runs share one generation (datasets/generate.py's generation lock); stale partials are removed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from og_marl_omsd.datasets.generate import MaMuJoCoDatasets, ensure_datasets, load_vault_config, location_of
from og_marl_omsd.datasets.vaults import (
    PARTIAL_PREFIX,
    episode_returns,
    fingerprint,
    read_dataset,
    remove_stale_partials,
    write_dataset,
)

from conftest import (
    PRETRAINED_STAGES,
    SMALL_RUN,
    assert_same_results,
    dead_pid,
    results_of,
    start_run,
)

pytestmark = pytest.mark.slow  # trains or runs whole runs: `pytest -m "not slow"` leaves it out

QUICK = "2halfcheetah-quick"
DATASETS = ("Random", "Medium", "Medium-Replay", "Expert")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def quick_vaults(tmp_path_factory):
    """The quick config's four datasets, generated once for this file."""
    vault_dir = str(tmp_path_factory.mktemp("vaults"))
    location = ensure_datasets(QUICK, rel_dir=vault_dir)
    return vault_dir, location


def _dataset_ctime(location, name):
    return os.stat(os.path.join(location.dataset_path(name), "metadata.json")).st_mtime_ns


# ------------------------------------------------------------------------------ generation
def test_quick_generation_is_readable_by_flashbax(quick_vaults):
    from flashbax.vault import Vault

    vault_dir, location = quick_vaults
    assert location.path == os.path.join(vault_dir, "og_marl_omsd_quick", "gymnasium_mamujoco", "2halfcheetah.vlt")
    assert location.available() == sorted(DATASETS)
    config = load_vault_config(QUICK)
    for name in DATASETS:
        # Exactly how OG-MARL's populate_from_vault opens a dataset.
        vault = Vault(vault_name=location.vault_name, vault_uid=name, rel_dir=vault_dir)
        experience = vault.read().experience
        length = experience["actions"].shape[1]
        assert experience["actions"].shape == (1, length, 2, 3), name
        assert experience["observations"].shape == (1, length, 2, 12), name
        assert experience["infos"]["state"].shape == (1, length, 17), name
        for key in ("rewards", "terminals", "truncations"):
            assert experience[key].shape == (1, length, 2), (name, key)
        assert all(str(value.dtype) == "float32" for value in (experience["actions"], experience["infos"]["state"]))
        if name != "Medium-Replay":
            assert length == config["transitions"]
        assert float(np.abs(experience["actions"]).max()) <= 1.0


def test_datasets_follow_the_protocol(quick_vaults):
    vault_dir, location = quick_vaults
    config = load_vault_config(QUICK)
    generator = MaMuJoCoDatasets(config, location)
    result = generator.behaviour().final_result()
    metadata = {name: read_metadata(location, name) for name in DATASETS}
    assert metadata["Expert"]["policy_step"] == result["final_step"] == config["behaviour"]["total_steps"]
    medium_step = metadata["Medium"]["policy_step"]
    assert metadata["Medium-Replay"]["policy_step"] == medium_step
    assert medium_step in [step for step, _ in result["evaluations"]] and medium_step > 0
    # Medium-Replay is the MATD3 replay buffer up to the Medium policy's step.
    replay = read_dataset(location, "Medium-Replay")
    assert replay["actions"].shape[0] == medium_step
    stored = generator.behaviour().replay_experience(medium_step)
    np.testing.assert_array_equal(replay["actions"], stored["actions"])
    # The first warmup_steps replay actions are uniform in [-1, 1]; dataset actions are policy + noise.
    warmup = config["behaviour"]["warmup_steps"]
    assert replay["actions"][:warmup].std() == pytest.approx(np.sqrt(1 / 3), abs=0.03)
    for name in ("Random", "Medium", "Expert"):
        assert metadata[name]["action_noise"] == config["action_noise"]


def read_metadata(location, name):
    with open(os.path.join(location.dataset_path(name), "metadata.json")) as handle:
        stored = json.load(handle)
    return stored.get("metadata", stored)


def test_rerun_skips_complete_datasets_and_regeneration_is_identical(quick_vaults, capsys):
    vault_dir, location = quick_vaults
    before = {name: _dataset_ctime(location, name) for name in DATASETS}
    expert = fingerprint(read_dataset(location, "Expert"))
    capsys.readouterr()
    ensure_datasets(QUICK, rel_dir=vault_dir)
    out = capsys.readouterr().out
    assert all(f"{location.dataset_path(name)} is complete; skipping" in out for name in DATASETS)
    assert "[matd3]" not in out and "generating" not in out
    assert {name: _dataset_ctime(location, name) for name in DATASETS} == before
    # Delete one dataset: only it is regenerated, from the finished behaviour run, bit for bit.
    shutil.rmtree(location.dataset_path("Expert"))
    ensure_datasets(QUICK, rel_dir=vault_dir)
    out = capsys.readouterr().out
    assert "[matd3]" not in out and out.count("generating") == 1
    assert fingerprint(read_dataset(location, "Expert")) == expert


def _killed_after_step_2000(quick_vaults, tmp_path):
    """The fixture's finished behaviour run (the reference) and a second run of the same config
    in ``tmp_path`` killed right after writing its step-2000 checkpoint."""
    from og_marl_omsd.datasets import matd3

    _, location = quick_vaults
    config = load_vault_config(QUICK)
    reference = MaMuJoCoDatasets(config, location).behaviour()
    resumed = MaMuJoCoDatasets(config, location_of(config, str(tmp_path))).behaviour()
    original_save = matd3.BehaviourTraining._save_checkpoint

    def save_then_die(self, learner, replay, state):
        original_save(self, learner, replay, state)
        if state["step"] == 2000:
            raise KeyboardInterrupt("killed after the step-2000 checkpoint")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matd3.BehaviourTraining, "_save_checkpoint", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            resumed.run()
    return reference, resumed


def test_behaviour_training_resumes_from_its_checkpoint(quick_vaults, tmp_path):
    """A run interrupted after its step-2000 checkpoint resumes there and ends exactly where
    the uninterrupted run (the fixture's) ended."""

    reference, resumed = _killed_after_step_2000(quick_vaults, tmp_path)
    assert not resumed.is_complete()
    # A kill between writing replay rows and pointing LATEST at the checkpoint leaves rows
    # beyond the checkpoint: they must not be loaded nor counted twice later.
    orphan = os.path.join(resumed.work_dir, "replay", "rows-000002000-000002500.npz")
    np.savez(orphan, actions=np.full((500, 2, 3), 7.0, "float32"))
    logs = []
    resumed.log = logs.append
    result = resumed.run()
    assert logs[0].startswith("[matd3] resumed at step 2000")
    assert result == reference.final_result()
    assert not os.path.exists(orphan)
    np.testing.assert_array_equal(
        resumed.replay_experience(3000)["actions"], reference.replay_experience(3000)["actions"]
    )
    final, expected = np.load(resumed.policy_path(None)), np.load(reference.policy_path(None))
    for key in expected.files:
        np.testing.assert_array_equal(final[key], expected[key])


def test_damaged_newest_behaviour_checkpoint_falls_back_to_the_previous_one(quick_vaults, tmp_path, capsys):
    """MATD3 checkpoints go through StageCheckpoint: with the step-2000 checkpoint's data
    truncated, the resume says so, falls back to step 1000 (kept as the fallback), drops
    the replay rows written after it and still ends exactly where the uninterrupted run did."""

    reference, resumed = _killed_after_step_2000(quick_vaults, tmp_path)
    checkpoints = os.path.join(resumed.work_dir, "checkpoints")
    assert sorted(os.listdir(checkpoints)) == ["LATEST", "step-000001000", "step-000002000"]
    newest = os.path.join(checkpoints, "step-000002000")
    data = [name for name in os.listdir(newest) if name.startswith("ckpt.data")][0]
    with open(os.path.join(newest, data), "r+b") as handle:
        handle.truncate(8)
    capsys.readouterr()
    logs = []
    resumed.log = logs.append
    result = resumed.run()
    out = capsys.readouterr().out
    assert f"the MATD3 behaviour checkpoint {newest} cannot be read" in out
    assert "fell back to the older MATD3 behaviour checkpoint" in out
    assert logs[0].startswith("[matd3] resumed at step 1000")
    assert result == reference.final_result()
    np.testing.assert_array_equal(
        resumed.replay_experience(3000)["actions"], reference.replay_experience(3000)["actions"]
    )
    final, expected = np.load(resumed.policy_path(None)), np.load(reference.policy_path(None))
    for key in expected.files:
        np.testing.assert_array_equal(final[key], expected[key])


def test_behaviour_run_of_the_older_checkpoint_layout_still_resumes(quick_vaults, tmp_path):
    """A work directory written before checkpoints/ (LATEST naming ckpt-<step>/ with networks.*
    and the state dict) resumes from it, ends equal to the reference and moves to the new layout."""

    reference, resumed = _killed_after_step_2000(quick_vaults, tmp_path)
    work = resumed.work_dir  # rewrite the step-2000 checkpoint as the older engine wrote it
    newest = os.path.join(work, "checkpoints", "step-000002000")
    legacy = os.path.join(work, "ckpt-000002000")
    os.makedirs(legacy)
    for name in os.listdir(newest):
        if name.startswith("ckpt."):
            os.rename(os.path.join(newest, name), os.path.join(legacy, "networks" + name[len("ckpt") :]))
    with open(os.path.join(newest, "state.json")) as handle:
        state = json.load(handle)["run_state"]
    with open(os.path.join(legacy, "state.json"), "w") as handle:
        json.dump(state, handle)
    with open(os.path.join(work, "LATEST"), "w") as handle:
        handle.write("ckpt-000002000")
    shutil.rmtree(os.path.join(work, "checkpoints"))
    logs = []
    resumed.log = logs.append
    assert resumed.run() == reference.final_result()
    assert logs[0].startswith("[matd3] resumed at step 2000")
    assert not os.path.exists(legacy) and not os.path.exists(os.path.join(work, "LATEST"))
    assert sorted(os.listdir(os.path.join(work, "checkpoints")))[0] == "LATEST"
    final, expected = np.load(resumed.policy_path(None)), np.load(reference.policy_path(None))
    for key in expected.files:
        np.testing.assert_array_equal(final[key], expected[key])


def test_resume_refuses_a_different_behaviour_config(quick_vaults):
    vault_dir, location = quick_vaults
    config = load_vault_config(QUICK)
    config["behaviour"] = {**config["behaviour"], "batch_size": 64}
    training = MaMuJoCoDatasets(config, location).behaviour()
    assert training.is_complete()  # the fixture's finished run, made with batch_size 32
    with pytest.raises(RuntimeError, match="another config"):
        training.run()


def test_updates_per_step_sets_the_updates_of_each_training_call(tmp_path, monkeypatch):
    """updates_per_step is the update-to-data ratio: train_every=50 at 0.1 is 5 updates per
    call, every call, after the warmup; a ratio that gives a fractional count is refused."""
    from og_marl_omsd.datasets import matd3

    config = load_vault_config(QUICK)
    config["behaviour"] = {**config["behaviour"], "total_steps": 1400, "updates_per_step": 0.1, "evaluate_every": 1400}
    counts = []
    original_train = matd3.MATD3.train

    def counting_train(self, batches, smoothing_noise):
        counts.append(batches["actions"].shape[0])
        return original_train(self, batches, smoothing_noise)

    monkeypatch.setattr(matd3.MATD3, "train", counting_train)
    MaMuJoCoDatasets(config, location_of(config, str(tmp_path))).behaviour().run()
    assert counts == [5] * 8  # steps 1000..1400 after the 1000-step warmup: 8 calls of 50 steps
    with pytest.raises(ValueError, match=r"train_every \* updates_per_step must be a positive integer.*50 \* 0.03"):
        matd3.MATD3Config.from_dict({"train_every": 50, "updates_per_step": 0.03})


# ------------------------------------------------------------------------------ safe writes
def test_failed_write_leaves_no_dataset(tmp_path, monkeypatch):
    from flashbax.vault import Vault

    config = load_vault_config(QUICK)
    location = location_of(config, str(tmp_path))
    original_write = Vault.write

    def write_then_fail(self, *args, **kwargs):
        original_write(self, *args, **kwargs)  # the data is on disk under the temporary uid
        raise OSError("No space left on device")

    monkeypatch.setattr(Vault, "write", write_then_fail)
    with pytest.raises(OSError, match="No space"):
        ensure_datasets(QUICK, ["Random"], rel_dir=str(tmp_path))
    assert not location.exists("Random")
    assert not os.path.exists(location.path) or not os.listdir(location.path)


def test_killed_write_leaves_no_usable_dataset_and_is_redone(tmp_path):
    """SIGKILL-like exit after flashbax wrote everything but before the rename."""
    script = (
        "import os, sys\n"
        "from og_marl_omsd.datasets.generate import ensure_datasets\n"
        "real_rename = os.rename\n"
        "def die(src, dst):\n"
        "    if '.partial-' in src:\n"
        "        os._exit(9)\n"
        "    real_rename(src, dst)\n"
        "os.rename = die\n"
        f"ensure_datasets({QUICK!r}, ['Random'], rel_dir={str(tmp_path)!r})\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 9, completed.stderr[-2000:]
    location = location_of(load_vault_config(QUICK), str(tmp_path))
    leftovers = [name for name in os.listdir(location.path) if name.startswith(PARTIAL_PREFIX)]
    assert len(leftovers) == 1 and os.path.isfile(os.path.join(location.path, leftovers[0], "metadata.json"))
    assert location.available() == [] and not location.exists("Random")
    ensure_datasets(QUICK, ["Random"], rel_dir=str(tmp_path))
    assert location.available() == ["Random"]
    assert not [name for name in os.listdir(location.path) if name.startswith(PARTIAL_PREFIX)]


def test_never_appends_to_an_existing_dataset(quick_vaults):
    vault_dir, location = quick_vaults
    experience = read_dataset(location, "Random")
    with pytest.raises(FileExistsError, match="append"):
        write_dataset(location, "Random", experience)
    assert read_dataset(location, "Random")["actions"].shape == experience["actions"].shape


def test_stale_partials_of_live_processes_are_kept(tmp_path):
    config = load_vault_config(QUICK)
    location = location_of(config, str(tmp_path))
    live = os.path.join(location.path, f"{PARTIAL_PREFIX}Medium-{os.getpid()}")
    dead = os.path.join(location.path, f"{PARTIAL_PREFIX}Expert-999999999")
    for path in (live, dead):
        os.makedirs(path)
    assert remove_stale_partials(location) == [dead]
    assert os.path.isdir(live) and not os.path.exists(dead)


# A second generation of the same scenario waits for the first: see
# test_second_mamujoco_generation_waits_for_the_first below.


# ------------------------------------------------------------------------------ config checks
def test_config_errors_are_clear():
    config = load_vault_config(QUICK)
    location = location_of(config, "unused")
    with pytest.raises(ValueError, match="Unknown vault config keys.*valid"):
        MaMuJoCoDatasets({**config, "nosie": 0.1}, location)
    with pytest.raises(ValueError, match="policy must be one of random, medium, medium_replay, expert"):
        MaMuJoCoDatasets({**config, "datasets": {"Good": {"policy": "good"}}}, location)
    with pytest.raises(ValueError, match="Unknown MATD3 settings.*valid"):
        MaMuJoCoDatasets({**config, "behaviour": {"batchsize": 3}}, location)
    with pytest.raises(ValueError, match="Unknown MaMuJoCo scenario"):
        MaMuJoCoDatasets({**config, "scenario": "3cheetah"}, location)
    with pytest.raises(KeyError, match="defines no dataset"):
        ensure_datasets(QUICK, ["Medium-Expert"], rel_dir="unused")


def test_medium_step_is_the_first_evaluation_reaching_the_fraction():
    from og_marl_omsd.datasets.matd3 import medium_step

    evaluations = [[0, -5.0], [1000, 300.0], [2000, 1200.0], [3000, 900.0], [4000, 3000.0]]
    assert medium_step(evaluations, 3000.0, 1 / 3) == (2000, 1200.0)
    assert medium_step(evaluations, 3000.0, 0.05) == (1000, 300.0)
    assert medium_step([[0, 10.0], [1000, -150.0], [2000, -120.0]], -300.0, 1 / 3) == (2000, -120.0)  # none reaches it


# ------------------------------------------------------------------------------ describe
def test_describe_prints_the_data_card_and_writes_the_plot(quick_vaults, tmp_path):
    from og_marl_omsd.datasets.describe import describe_path

    vault_dir, location = quick_vaults
    lines = []
    plot = str(tmp_path / "actions.png")
    rows = describe_path(location.path, plot_path=plot, print_fn=lines.append)
    table = "\n".join(lines)
    assert list(rows) == ["Random", "Medium-Replay", "Medium", "Expert"]
    assert "return mean" in table and "transitions" in table and "episodes" in table
    random = read_dataset(location, "Random")
    by_hand = random["rewards"][:, 0].reshape(-1, 1000).sum(axis=1)  # 1000-step episodes
    assert rows["Random"]["episodes"] == len(by_hand) == 2
    assert rows["Random"]["return_mean"] == pytest.approx(by_hand.mean(), rel=1e-4)
    assert rows["Random"]["return_min"] == pytest.approx(by_hand.min(), rel=1e-4)
    assert f"{by_hand.mean():.1f}" in table
    with open(plot, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    # One dataset directory works too, and so does the command line.
    single = describe_path(location.dataset_path("Medium"), plot_path=str(tmp_path / "m.png"), print_fn=lines.append)
    assert list(single) == ["Medium"]
    completed = subprocess.run(
        [sys.executable, "-m", "og_marl_omsd.datasets", "describe", location.path, "--plot", str(tmp_path / "cli.png")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Medium-Replay" in completed.stdout and os.path.isfile(tmp_path / "cli.png")


def test_describe_rejects_a_path_without_datasets(tmp_path):
    from og_marl_omsd.datasets.describe import describe_path

    empty = tmp_path / "src" / "gymnasium_mamujoco" / "2halfcheetah.vlt"
    empty.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="No complete dataset"):
        describe_path(str(empty))
    with pytest.raises(ValueError, match="not a <scenario>.vlt"):
        describe_path(str(tmp_path))


def test_episode_returns_sum_team_rewards_per_episode():
    rewards = np.array([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]], "float32")
    ends = np.array([[0, 0], [1, 1], [0, 0], [0, 0], [0, 0]], "float32")
    truncations = np.array([[0, 0], [0, 0], [0, 0], [1, 1], [0, 0]], "float32")
    returns = episode_returns({"rewards": rewards, "terminals": ends, "truncations": truncations})
    np.testing.assert_allclose(returns, [3.0, 7.0])  # the unfinished last step is not an episode


# ------------------------------------------------------------------------------ runner
def test_runner_trains_on_a_quick_vault_and_evaluates_in_mamujoco(quick_vaults, tmp_path):
    """The runner reads the dataset where its vault config wrote it (the quick config has its own source)."""
    vault_dir, location = quick_vaults
    run_dir = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "og_marl_omsd.run",
            "system=omsd",
            "env=mamujoco",
            "task=2halfcheetah",
            f"task.vault_config={QUICK}",
            "dataset=Medium",
            "training_steps=10",
            "evaluation_every=10",
            "num_eval_episodes=1",
            "system.critic_steps=10",
            "system.behaviour_steps=10",
            f"vault_dir={vault_dir}",
            f"pretrained_dir={tmp_path / 'pretrained'}",
            f"run_dir={run_dir}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert location.dataset_path("Medium") in completed.stdout  # the quick vault, not a freshly generated full one
    results = json.loads((run_dir / "results.json").read_text())
    medium = episode_returns(read_dataset(location, "Medium"))
    assert results["dataset_statistics"]["episodes"] == medium.size
    assert results["dataset_statistics"]["mean_return"] == pytest.approx(float(medium.mean()), rel=1e-5)
    assert np.isfinite(results["final_evaluation"]["mean_episode_return"])
    assert [e["training_steps"] for e in results["evaluation_curve"]] == [0, 10]


@pytest.mark.slow
def test_parallel_runs_share_one_generation_and_one_training_per_stage(tmp_path):
    from og_marl_omsd.datasets.generate import generation_lock, load_vault_config, location_of

    config = tmp_path / "tiny_bandit.yaml"
    config.write_text(
        "source: og_marl_omsd\nenv: bandit\nscenario: 2agent_gmm\ngenerate_on_first_use: true\n"
        "datasets:\n  GMM: {num_samples: 20000, mean: 0.8, std: 0.3, seed: 0}\n"
    )
    vault_dir = tmp_path / "vaults"
    location = location_of(load_vault_config(str(config)), str(vault_dir))
    base = [*SMALL_RUN, f"task.vault_config={config}", f"vault_dir={vault_dir}", f"pretrained_dir={tmp_path / 'cache'}"]
    with generation_lock(location.path):  # both must find the generation busy, then wait for the one generation
        processes = [start_run([*base, f"run_dir={tmp_path / name}"], tmp_path) for name in ("a", "b")]
        for process in processes:
            for line in process.stdout:
                if "is generating these datasets" in line:
                    break
            else:
                pytest.fail(process.communicate()[1][-3000:])
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, out[-2000:] + err[-3000:]
        outputs.append(out)
    everything = "".join(outputs)
    assert everything.count("[datasets] generating") == 1
    for stage in PRETRAINED_STAGES:
        assert everything.count(f"[pretrain] {stage}: training") == 1
        assert everything.count(f"[pretrain] {stage}: loaded from cache") == 1
    assert_same_results(results_of(tmp_path / "a"), results_of(tmp_path / "b"))


@pytest.mark.slow
def test_second_mamujoco_generation_waits_for_the_first(tmp_path, capsys):
    from og_marl_omsd.datasets.generate import generation_lock

    directory = str(tmp_path / ".behaviour" / "x")
    done = tmp_path / "holder_done"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, time\nfrom og_marl_omsd.datasets.generate import generation_lock\n"
            f"with generation_lock({directory!r}):\n    print('held', flush=True)\n    time.sleep(3)\n"
            f"    pathlib.Path({str(done)!r}).touch()\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with generation_lock(directory):
        assert done.exists()  # got the lock only once the holder was done with it
    holder.wait()
    assert f"another process (pid {holder.pid}) is generating" in capsys.readouterr().out


@pytest.mark.slow
def test_dead_bandit_partial_is_removed(tmp_path):
    from og_marl_omsd.datasets.generate import ensure_datasets, load_vault_config, location_of

    config = tmp_path / "tiny_bandit.yaml"
    config.write_text(
        "source: og_marl_omsd\nenv: bandit\nscenario: 2agent_gmm\ndatasets:\n"
        "  GMM: {num_samples: 500, mean: 0.8, std: 0.3, seed: 0}\n"
    )
    location = location_of(load_vault_config(str(config)), str(tmp_path / "vaults"))
    stale = location.dataset_path(f".partial-GMM-{dead_pid()}")
    os.makedirs(stale)
    ensure_datasets(str(config), rel_dir=str(tmp_path / "vaults"))
    assert location.available() == ["GMM"] and not os.path.exists(stale)
