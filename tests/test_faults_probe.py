"""Fault injection for issue 13, one section per numbered fault: stale cache entries, damaged
files on resume, resumed evaluation seeds, sweeps, parallel runs, damaged cache entries,
late checks, damaged data, checkpoints, interruptions and full disks, strays.

Points 1-3 compare against an uninterrupted run with a fresh cache and require identical
results, evaluation returns included."""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from og_marl_omsd.runner import run as runner
from og_marl_omsd.support import files
from og_marl_omsd.support.checkpoints import StageCheckpoint
from og_marl_omsd.support.errors import StageStopped, UserError

from conftest import bandit_location, run_config

pytestmark = pytest.mark.slow  # trains or runs whole runs: `pytest -m "not slow"` leaves it out

COMMON = [
    "system=omsd",
    "env=bandit",
    "seed=3",
    "training_steps=10",
    "evaluation_every=5",
    "num_eval_episodes=1",
    "checkpoint_every=5",
    "system.critic_steps=10",
    "system.behaviour_steps=10",
    "system.pretrain_log_every=5",
    "system.jit_compile=false",
]
STAGES = ("critic_joint", "behaviour_sequential")


def cli(overrides, cwd, *extra_args):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(
        [sys.executable, "-m", "og_marl_omsd.run", *extra_args, *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        # Ctrl-C's default: a job started in the background by a non-interactive shell (a CI
        # runner, nohup) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
        restore_signals=True,
        preexec_fn=_default_sigint,
    )


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(overrides, cwd, *extra_args, timeout=600):
    process = cli(overrides, cwd, *extra_args)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def interrupt_at(overrides, line_prefix, cwd, sig=signal.SIGKILL):
    """Start the run, send ``sig`` as soon as stdout shows ``line_prefix``; returns (code, stdout, stderr)."""
    process = cli(overrides, cwd)
    watchdog = threading.Timer(600, process.kill)
    watchdog.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith(line_prefix):
                os.kill(process.pid, sig)
                break
        rest, err = process.communicate(timeout=120)
    finally:
        watchdog.cancel()
    return process.returncode, "".join(lines) + rest, err


def dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def results_of(run_dir):
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_vault_dir):
    """The uninterrupted bandit run of ``COMMON`` with a cache of its own: results, run dir, cache dir."""
    root = tmp_path_factory.mktemp("reference")
    results = runner.run(
        run_config(
            *COMMON, f"vault_dir={small_vault_dir}", f"run_dir={root / 'run'}", f"pretrained_dir={root / 'cache'}"
        )
    )
    return results, root / "run", root / "cache"


def assert_same_results(results, expected):
    assert results["evaluation_curve"] == expected["evaluation_curve"]  # bit for bit, evaluation returns included
    assert results["final_evaluation"] == expected["final_evaluation"]
    assert results["stage_steps"] == expected["stage_steps"]
    assert results["pretrained_cache_keys"] == expected["pretrained_cache_keys"]


# ---------------------------------------------------------------------------- 1. cache keys
def test_1_cache_is_not_served_to_a_run_with_another_replay_batch_size(tmp_path, small_vault_dir, reference, capsys):
    _, _, shared_cache = reference
    cache = tmp_path / "shared"
    shutil.copytree(shared_cache, cache)
    other = [*COMMON, "replay.batch_size=8", f"vault_dir={small_vault_dir}"]
    capsys.readouterr()
    results = runner.run(run_config(*other, f"run_dir={tmp_path / 'run'}", f"pretrained_dir={cache}"))
    output = capsys.readouterr().out
    assert "loaded from cache" not in output
    assert all(f"[pretrain] {stage}: training 10 steps" in output for stage in STAGES)
    fresh = runner.run(
        run_config(*other, f"run_dir={tmp_path / 'fresh'}", f"pretrained_dir={tmp_path / 'fresh_cache'}")
    )
    assert_same_results(results, fresh)
    assert results["pretrained_cache_keys"] != reference[0]["pretrained_cache_keys"]


def test_1_cache_key_covers_host_buffer_settings_and_key_version(monkeypatch):
    from og_marl_omsd import host
    from og_marl_omsd.standalone.replay_buffers import FlashbaxReplayBuffer
    from og_marl_omsd.systems import pretraining

    config = {"steps": 10, "seed": 0}

    def key(buffer):
        return pretraining.stage_key(config, "fingerprint", {"replay": pretraining.replay_signature(buffer)})

    base = key(FlashbaxReplayBuffer(sequence_length=2, batch_size=32))
    assert base == key(FlashbaxReplayBuffer(sequence_length=2, batch_size=32, seed=7))  # sampling seed: not learning
    assert base != key(FlashbaxReplayBuffer(sequence_length=3, batch_size=32))
    assert base != key(FlashbaxReplayBuffer(sequence_length=2, batch_size=8))
    assert base != key(FlashbaxReplayBuffer(sequence_length=2, batch_size=32, sample_period=2))

    class OtherBuffer(FlashbaxReplayBuffer):  # another implementation (OG-MARL's) with the same settings
        pass

    assert base != key(OtherBuffer(sequence_length=2, batch_size=32))
    monkeypatch.setattr(host, "HOST", "og_marl" if host.HOST == "standalone" else "standalone")
    assert base != key(FlashbaxReplayBuffer(sequence_length=2, batch_size=32))
    monkeypatch.undo()
    monkeypatch.setattr(pretraining, "KEY_VERSION", pretraining.KEY_VERSION - 1)  # entries of an older rule
    assert base != key(FlashbaxReplayBuffer(sequence_length=2, batch_size=32))


# ---------------------------------------------------------------------------- 2. damaged files on resume
def test_2_killed_run_with_damaged_metrics_resumes_to_the_reference(tmp_path, small_vault_dir, reference):
    expected, reference_dir, _ = reference
    run_dir = tmp_path / "run"
    overrides = [*COMMON, f"vault_dir={small_vault_dir}", f"run_dir={run_dir}", f"pretrained_dir={tmp_path / 'cache'}"]
    code, out, err = interrupt_at(overrides, "[checkpoint] actors step 5/", tmp_path)
    assert code == -signal.SIGKILL, out[-2000:] + err[-2000:]
    metrics = run_dir / "metrics.json"
    metrics.write_text(metrics.read_text()[: len(metrics.read_text()) // 2])  # a write cut short (old in-place writer)
    (run_dir / "config.yaml").write_text("system: [unclosed")  # damaged too: rebuilt
    pid = dead_pid()
    leftovers = [run_dir / f".metrics.json.tmp-{pid}", run_dir / f".results.json.tmp-{pid}"]
    for leftover in leftovers:
        leftover.write_text("{")
    code, out, err = run_cli(overrides, tmp_path)
    assert code == 0, out[-2000:] + err[-3000:]
    assert "metrics.json was damaged" in out and re.search(r"\[resume\] resuming actors from step (5|10)", out)
    assert_same_results(results_of(run_dir), expected)
    assert json.loads(metrics.read_text()) == json.loads((reference_dir / "metrics.json").read_text())
    assert not any(leftover.exists() for leftover in leftovers)
    assert "seed: 3" in (run_dir / "config.yaml").read_text()


def test_2_interrupted_atomic_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    files.write_json(str(target), {"step_0": 1})

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError):
        files.write_json(str(target), {"step_0": 1, "step_1": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"step_0": 1}
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]


def test_2_damaged_results_json_is_written_again(tmp_path, small_vault_dir, reference, capsys):
    expected, reference_dir, cache = reference
    run_dir = tmp_path / "run"
    shutil.copytree(reference_dir, run_dir)
    (run_dir / "results.json").write_text('{"system": "om')
    results = runner.run(
        run_config(*COMMON, f"vault_dir={small_vault_dir}", f"run_dir={run_dir}", f"pretrained_dir={cache}")
    )
    assert "results.json is damaged" in capsys.readouterr().out
    assert_same_results(results, expected)
    assert_same_results(results_of(run_dir), expected)


# ---------------------------------------------------------------------------- 3. resumed evaluation seeds
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


def test_3_resumed_mamujoco_run_evaluates_like_an_uninterrupted_one(tmp_path, tiny_mamujoco_vault, monkeypatch, capsys):
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


def test_3_mamujoco_seeding_state_round_trips():
    from og_marl_omsd.environments.mamujoco import make_mamujoco

    first, second = make_mamujoco("2halfcheetah", seed=5), make_mamujoco("2halfcheetah", seed=5)
    first.reset()
    state = first.checkpoint_state()
    second.restore_checkpoint_state(state)
    np.testing.assert_array_equal(first.reset()[1]["state"], second.reset()[1]["state"])
    assert state == {"resets": 1}


# ---------------------------------------------------------------------------- 4 and 11. sweeps
def test_4_sweep_runs_every_job_and_reports_failures_at_the_end(tmp_path, small_vault_dir):
    overrides = [
        "training_steps=2",
        "evaluation_every=2",
        "num_eval_episodes=1",
        "system.critic_steps=2",
        "system.behaviour_steps=2",
        "system.jit_compile=false",
        "system.beta=inf,0.5",
        f"vault_dir={small_vault_dir}",
        f"runs_root={tmp_path / 'runs'}",
        f"pretrained_dir={tmp_path / 'cache'}",
    ]
    code, out, err = run_cli(overrides, tmp_path, "-m")
    assert code == 2, out[-2000:] + err[-3000:]
    assert "Traceback" not in out + err
    report = err[err.index("[sweep]") :].splitlines()
    assert report[0] == "[sweep] 1 of 2 jobs failed:"
    assert len(report) == 2 and "system.beta=inf" in report[1] and "exit 2" in report[1] and "finite" in report[1]
    completed = [path for path, _, names in os.walk(tmp_path / "runs" / "omsd") if "results.json" in names]
    assert len(completed) == 1  # the job after the failed one ran to the end
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()  # 11: no strays in the cwd
    assert len(list((tmp_path / "runs" / "multirun").glob("*/multirun.yaml"))) == 1


# ---------------------------------------------------------------------------- 5. parallel runs
def test_5_parallel_runs_share_one_generation_and_one_training_per_stage(tmp_path):
    from og_marl_omsd.datasets.generate import generation_lock, load_vault_config, location_of

    config = tmp_path / "tiny_bandit.yaml"
    config.write_text(
        "source: og_marl_omsd\nenv: bandit\nscenario: 2agent_gmm\ngenerate_on_first_use: true\n"
        "datasets:\n  GMM: {num_samples: 20000, mean: 0.8, std: 0.3, seed: 0}\n"
    )
    vault_dir = tmp_path / "vaults"
    location = location_of(load_vault_config(str(config)), str(vault_dir))
    base = [*COMMON, f"task.vault_config={config}", f"vault_dir={vault_dir}", f"pretrained_dir={tmp_path / 'cache'}"]
    with generation_lock(location.path):  # both must find the generation busy, then wait for the one generation
        processes = [cli([*base, f"run_dir={tmp_path / name}"], tmp_path) for name in ("a", "b")]
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
    for stage in STAGES:
        assert everything.count(f"[pretrain] {stage}: training") == 1
        assert everything.count(f"[pretrain] {stage}: loaded from cache") == 1
    assert_same_results(results_of(tmp_path / "a"), results_of(tmp_path / "b"))


def test_5_second_mamujoco_generation_waits_for_the_first(tmp_path, capsys):
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


# ---------------------------------------------------------------------------- 6. damaged cache entry
@pytest.mark.parametrize("damage", ["truncate_data", "empty_complete", "no_index"])
def test_6_damaged_cache_entry_is_a_miss_and_is_replaced(damage, tmp_path, small_vault_dir, reference, capsys):
    expected, _, reference_cache = reference
    cache = tmp_path / "cache"
    shutil.copytree(reference_cache, cache)
    entry = next(cache.glob("critic_joint-*"))
    if damage == "truncate_data":
        data = next(entry.glob("module.data-*"))
        data.write_bytes(data.read_bytes()[:40])
    elif damage == "empty_complete":
        (entry / "COMPLETE").write_text("")
    else:
        (entry / "module.index").unlink()
    capsys.readouterr()
    results = runner.run(
        run_config(*COMMON, f"vault_dir={small_vault_dir}", f"run_dir={tmp_path / 'run'}", f"pretrained_dir={cache}")
    )
    output = capsys.readouterr().out
    assert f"the cache entry {entry} is damaged" in output
    assert "[pretrain] critic_joint: training 10 steps" in output
    assert "[pretrain] behaviour_sequential: loaded from cache" in output
    assert_same_results(results, expected)
    assert (entry / "COMPLETE").read_text() == entry.name.split("-", 1)[1]  # replaced by a complete entry
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["actors"]  # 11: no copies of cached stages


# ---------------------------------------------------------------------------- 7. early checks
@pytest.mark.parametrize(
    "override,fragment",
    [
        ("seed=-1", "seed must be a whole number in [0, 2147483647]"),
        ("seed=99999999999", "seed must be a whole number in [0, 2147483647]"),
        ("system.agent_order=[1,1]", "agent_order must be null or a permutation"),
        ("system.agent_order=[0,1,2]", "orders 3 agents, but bandit has 2"),
        ("system.diffusion_width=0", "diffusion_width must be a whole number >= 1"),
        ("system.diffusion_blocks=-1", "diffusion_blocks must be a whole number >= 0"),
        ("system.diffusion_dropout=1.0", "diffusion_dropout must be in [0, 1)"),
        ("system.critic_hidden_sizes=[0]", "critic_hidden_sizes must be a non-empty list"),
        ("replay.sequence_length=1", "replay.sequence_length must be a whole number >= 2"),
        ("system.beta=inf", "beta must be finite"),
        ("replay.batch_size=0", "replay.batch_size must be a whole number in [1,"),
        ("replay.batch_size=30000", "replay.batch_size=30000 is larger than dataset GMM's 20000 timesteps"),
        ("+foo=1", "Unknown setting foo"),
    ],
)
def test_7_bad_settings_stop_before_anything_is_written(override, fragment, tmp_path, small_vault_dir):
    with pytest.raises(UserError) as error:
        runner.run(
            run_config(
                *COMMON,
                override,
                f"vault_dir={small_vault_dir}",
                f"runs_root={tmp_path / 'runs'}",
                f"pretrained_dir={tmp_path / 'cache'}",
            )
        )
    assert fragment in str(error.value)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_7_hydra_level_errors_exit_2_without_traceback(tmp_path):
    for override in ("training_steps=1e6", "no_such_setting=1"):
        code, out, err = run_cli([override, f"runs_root={tmp_path / 'runs'}"], tmp_path, timeout=120)
        assert code == 2, err
        assert "Traceback" not in out + err and override.split("=")[0] in err
    assert not (tmp_path / "runs").exists()


def test_7_float_and_integer_spellings_get_one_run_directory(tmp_path):
    from og_marl_omsd.runner.registry import load_system

    directories = set()
    for spelling in ("1e6", "1000000", "1000000.0"):
        cfg = run_config(f"system.critic_steps={spelling}", f"runs_root={tmp_path}")
        runner.configured_system_parameters(cfg, load_system("omsd"))
        assert cfg.system.critic_steps == 1000000 and isinstance(cfg.system.critic_steps, int)
        directories.add(runner.default_run_dir(cfg, "GMM"))
    assert len(directories) == 1


# ---------------------------------------------------------------------------- 8. damaged data on disk
@pytest.mark.parametrize(
    "damage,fragment",
    [
        ("empty", "is incomplete: it is empty"),
        ("no_metadata", "is incomplete: it has no metadata.json"),
        ("corrupt_chunk", "cannot be read"),
    ],
)
def test_8_damaged_dataset_is_one_paragraph_naming_the_folder(damage, fragment, tmp_path, small_vault_dir):
    vault_dir = tmp_path / "vaults"
    shutil.copytree(small_vault_dir, vault_dir)
    dataset = bandit_location(str(vault_dir)).dataset_path("GMM")
    if damage == "empty":
        shutil.rmtree(dataset)
        os.makedirs(dataset)
    elif damage == "no_metadata":
        os.remove(os.path.join(dataset, "metadata.json"))
    else:
        chunks = sorted(
            (os.path.join(dataset, "d", name) for name in os.listdir(os.path.join(dataset, "d"))), key=os.path.getsize
        )
        data = bytearray(open(chunks[-1], "rb").read())
        data[100::97] = bytes(b ^ 0xFF for b in data[100::97])
        open(chunks[-1], "wb").write(bytes(data))
    with pytest.raises(UserError) as error:
        runner.run(
            run_config(
                *COMMON,
                f"vault_dir={vault_dir}",
                f"runs_root={tmp_path / 'runs'}",
                f"pretrained_dir={tmp_path / 'cache'}",
            )
        )
    assert fragment in str(error.value) and dataset in str(error.value) and "rm -r" in str(error.value)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- 9. checkpoints
def _stage(directory):
    from test_resume import _Stage

    return _Stage(directory)


def _save_steps(stage, steps):
    values = {}
    for step in steps:
        stage.step()
        stage.checkpoint.save(step, stage.total)
        values[step] = stage.values()
    return values


def test_9_previous_checkpoint_is_kept_and_used_when_the_newest_is_damaged(tmp_path, capsys):
    stage = _stage(tmp_path)
    values = _save_steps(stage, (5, 10, 15))
    path = stage.checkpoint.path
    assert sorted(os.listdir(path)) == ["LATEST", "step-000000010", "step-000000015"]
    data = [name for name in os.listdir(os.path.join(path, "step-000000015")) if name.startswith("ckpt.data")][0]
    with open(os.path.join(path, "step-000000015", data), "r+b") as handle:
        handle.truncate(8)
    restored = _stage(tmp_path)
    assert restored.checkpoint.restore(restored.total) == 10
    assert "fell back to the older stage checkpoint" in capsys.readouterr().out
    for a, b in zip(values[10], restored.values()):
        np.testing.assert_array_equal(a, b)


def test_9_empty_latest_never_restarts_from_step_0(tmp_path, capsys):
    stage = _stage(tmp_path)
    values = _save_steps(stage, (5, 10))
    latest = os.path.join(stage.checkpoint.path, "LATEST")
    open(latest, "w").close()
    restored = _stage(tmp_path)
    assert restored.checkpoint.restore(restored.total) == 10
    assert "LATEST is empty or damaged" in capsys.readouterr().out
    for a, b in zip(values[10], restored.values()):
        np.testing.assert_array_equal(a, b)
    for name in os.listdir(stage.checkpoint.path):  # nothing readable at all: stop, do not start again
        if name.startswith("step-"):
            os.remove(os.path.join(stage.checkpoint.path, name, "state.json"))
    with pytest.raises(StageStopped, match="cannot be restored"):
        _stage(tmp_path).checkpoint.restore(20)


# ---------------------------------------------------------------------------- 10. interruptions and disks
def test_10_ctrl_c_prints_one_line_without_a_traceback(tmp_path, small_vault_dir):
    overrides = [
        *COMMON,
        f"vault_dir={small_vault_dir}",
        f"run_dir={tmp_path / 'run'}",
        f"pretrained_dir={tmp_path / 'cache'}",
    ]
    code, out, err = interrupt_at(overrides, "[checkpoint] critic_joint step 5/", tmp_path, sig=signal.SIGINT)
    assert code == 130, out[-2000:] + err[-3000:]
    assert "Traceback" not in out + err
    assert [line for line in err.splitlines() if line.startswith("Interrupted")] == [runner.INTERRUPTED]


def test_10_full_disk_writing_results_is_one_paragraph_and_resumable(
    tmp_path, small_vault_dir, reference, monkeypatch, capsys
):
    expected, _, reference_cache = reference
    cache = tmp_path / "cache"
    shutil.copytree(reference_cache, cache)
    leftover = cache / f"critic_joint-0000.partial-{dead_pid()}"
    leftover.mkdir()
    overrides = [*COMMON, f"vault_dir={small_vault_dir}", f"run_dir={tmp_path / 'run'}", f"pretrained_dir={cache}"]
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


def test_10_full_disk_writing_the_cache_continues_without_caching(
    tmp_path, small_vault_dir, reference, monkeypatch, capsys
):
    expected = reference[0]

    make_partial = files.partial_dir

    def disk_full(path):  # the cache's disk is full (the run directory's is not)
        if os.path.abspath(path).startswith(str(tmp_path / "cache")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return make_partial(path)

    monkeypatch.setattr(files, "partial_dir", disk_full)
    results = runner.run(
        run_config(
            *COMMON,
            f"vault_dir={small_vault_dir}",
            f"run_dir={tmp_path / 'run'}",
            f"pretrained_dir={tmp_path / 'cache'}",
        )
    )
    assert capsys.readouterr().out.count("continuing without caching it") == 2
    assert_same_results(results, expected)
    assert os.listdir(tmp_path / "cache") == [".locks"]  # nothing partial left behind


# ---------------------------------------------------------------------------- 11. strays and small things
def test_11_dead_bandit_partial_is_removed(tmp_path):
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


def test_11_mujoco_warnings_go_to_stderr_not_to_the_working_directory(tmp_path, monkeypatch, capsys):
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


def test_11_datasets_command_line_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from og_marl_omsd.datasets.__main__ import cli as datasets_cli

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert datasets_cli(["describe", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"Error: {tmp_path} is not a <scenario>.vlt directory."
    assert datasets_cli(["generate", "bandit", "--datasets", "Nope", "--vault-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("Error: Vault config bandit defines no dataset Nope; it defines GMM")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ValueError):
        datasets_cli(["describe", str(tmp_path)])


def test_11_wandb_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a)
    )
    with pytest.raises(UserError, match="pip install wandb"):
        runner.run(run_config("logger.wandb=true", f"runs_root={tmp_path / 'runs'}"))
    assert not (tmp_path / "runs").exists()


def test_11_read_only_cache_serves_the_stages_it_holds(tmp_path, small_vault_dir, reference, monkeypatch, capsys):
    from og_marl_omsd.runner import validation

    expected, _, reference_cache = reference
    cache = tmp_path / "cache"
    shutil.copytree(reference_cache, cache)
    real_check = validation.check_writable_directory

    def read_only(path, what, setting):
        if setting == "pretrained_dir":
            raise UserError(f"Cannot write the {what} {path}: read-only file system.")
        real_check(path, what, setting)

    monkeypatch.setattr(validation, "check_writable_directory", read_only)
    before = sorted(os.listdir(cache))
    results = runner.run(
        run_config(*COMMON, f"vault_dir={small_vault_dir}", f"run_dir={tmp_path / 'run'}", f"pretrained_dir={cache}")
    )
    output = capsys.readouterr().out
    assert "is not writable: it is used read-only" in output
    assert all(f"[pretrain] {stage}: loaded from cache" in output for stage in STAGES)
    assert_same_results(results, expected)
    assert sorted(os.listdir(cache)) == before
