"""Fault injection: bad input is one clear error that writes nothing, a full disk leaves no
partial dataset, a NaN stops the run with the last good checkpoint intact, and runs are
deterministic on the CPU."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from og_marl_omsd.runner import run as runner
from og_marl_omsd.support.errors import NonFiniteLossError, UserError

from conftest import bandit_location, run_config


def fast_overrides(tmp_path, vault_dir, *extra, jit=False):
    """A run of 20 steps per stage, checkpoints every 5, writing only under ``tmp_path``."""
    defaults = [
        "training_steps=20",
        "evaluation_every=10",
        "num_eval_episodes=1",
        "checkpoint_every=5",
        "system.critic_steps=20",
        "system.behaviour_steps=20",
        "system.pretrain_log_every=10",
        f"system.jit_compile={str(jit).lower()}",
        f"vault_dir={vault_dir}",
        f"pretrained_dir={tmp_path / 'pretrained'}",
        f"runs_root={tmp_path / 'runs'}",
    ]
    chosen = {override.split("=", 1)[0] for override in extra}
    return [o for o in defaults if o.split("=", 1)[0] not in chosen] + list(extra)


def assert_nothing_written(tmp_path):
    assert not (tmp_path / "runs").exists() and not (tmp_path / "pretrained").exists()


def bad_vault(tmp_path, change, steps=200):
    """A vault dir holding dataset ``Bad``: the bandit data of ``steps`` steps after ``change(experience)``."""
    from og_marl_omsd.datasets.vaults import write_dataset
    from og_marl_omsd.environments.bandit import generate_bandit_experience

    experience = generate_bandit_experience(steps, seed=0)
    change(experience)
    vault_dir = str(tmp_path / "vaults")
    write_dataset(bandit_location(vault_dir), "Bad", experience)
    return vault_dir


def three_agents(e):
    for key in ("observations", "actions"):
        e[key] = np.concatenate([e[key], e[key][:, :1]], axis=1)
    for key in ("rewards", "terminals", "truncations"):
        e[key] = np.concatenate([e[key], e[key][:, :1]], axis=1)


def set_field(key, value):
    def change(e):
        if key == "state":
            e["infos"]["state"] = value(len(e["actions"]))
        else:
            e[key] = value(len(e["actions"]))

    return change


def poison(e):
    e["observations"][:3, 0, 0] = np.nan
    e["rewards"][5:7, 1] = np.inf


def out_of_range(e):
    e["actions"][:5, 0, 0] = 1.5


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "change,steps,fragments",
    [
        (
            three_agents,
            200,
            [
                "agent count: expected 2 (agent_0, agent_1), found 3",
                "observations: expected per-step shape (2, 1), found (3, 1)",
            ],
        ),
        (
            set_field("observations", lambda t: np.ones((t, 2, 4), "float32")),
            200,
            ["observations: expected per-step shape (2, 1), found (2, 4)"],
        ),
        (
            set_field("actions", lambda t: np.zeros((t, 2, 2), "float32")),
            200,
            ["actions: expected per-step shape (2, 1), found (2, 2)"],
        ),
        (
            set_field("state", lambda t: np.ones((t, 3), "float32")),
            200,
            ["infos.state: expected per-step shape (1,), found (3,)"],
        ),
        (poison, 200, ["non-finite values", "observations: 3 NaN, 0 inf", "rewards: 0 NaN, 2 inf"]),
        (out_of_range, 200, ["5 of 400 action values outside [-1, 1]", "clip_actions=true"]),
        (lambda e: None, 0, ["is empty (0 timesteps)"]),
    ],
    ids=["agents", "observation_shape", "action_shape", "state_shape", "nan_inf", "actions_out_of_range", "empty"],
)
def test_bad_vault_is_one_clear_error_before_anything_is_written(change, steps, fragments, tmp_path):
    vault_dir = bad_vault(tmp_path, change, steps)
    with pytest.raises(UserError) as error:
        runner.run(run_config(*fast_overrides(tmp_path, vault_dir, "dataset=Bad")))
    message = str(error.value)
    assert "Bad" in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert_nothing_written(tmp_path)


def test_out_of_range_actions_are_clipped_only_when_configured(tmp_path, capsys):
    vault_dir = bad_vault(tmp_path, out_of_range, 2000)
    results = runner.run(run_config(*fast_overrides(tmp_path, vault_dir, "dataset=Bad", "clip_actions=true")))
    assert "clip_actions=true: 5 action values outside [-1, 1] are clipped" in capsys.readouterr().out
    assert results["stage_steps"]["actors"] == 20


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["training_steps=0"], ["training_steps must be > 0 and at most 2**63 - 1 (got 0)"]),
        (
            ["training_steps=-5", "checkpoint_every=0"],
            ["training_steps must be > 0 and at most 2**63 - 1 (got -5)", "checkpoint_every must be > 0"],
        ),
        # issue 22: settings that were accepted, then crashed with a traceback after the run directory existed
        (["system.steps_per_call=0"], ["steps_per_call must be a whole number in [1, 2**31 - 1] (got 0)"]),
        (["system=bc", "system.steps_per_call=0"], ["steps_per_call must be a whole number in [1, 2**31 - 1]"]),
        (["system.beta=1e300"], ["beta must be finite in float32", "(got 1e+300)"]),
        (["system.actor_learning_rate=1e300"], ["actor_learning_rate must be a number in (0, 3.4e38]"]),
        (["training_steps=100000000000000000000"], ["training_steps must be > 0 and at most 2**63 - 1"]),
        (["system.critic_steps=1e30"], ["critic_steps must be at most 2**63 - 1"]),
        (["system.diffusion_hidden=10000000"], ["the networks need at least", "behaviour", "more than this machine"]),
        (["system.critic_hidden_sizes=[200000,200000]"], ["the networks need at least", "critic"]),
        (["system.beta=0"], ["beta must be > 0 (got 0", "system.<name>"]),
        (["system.beta=-1.5"], ["beta must be > 0 (got -1.5)"]),
        (
            ["dataset=NoSuchData"],
            [
                "'NoSuchData' does not exist",
                "Available on disk",
                "GMM",
                "python -m og_marl_omsd.datasets generate bandit",
            ],
        ),
    ],
)
def test_bad_settings_are_one_clear_error_before_anything_is_written(overrides, fragments, tmp_path, small_vault_dir):
    with pytest.raises(UserError) as error:
        runner.run(run_config(*fast_overrides(tmp_path, small_vault_dir, *overrides)))
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    "setting,what",
    [
        ("run_dir={file}/run", "Cannot write the run directory"),
        ("runs_root={file}/runs", "Cannot write the run directory"),
        ("pretrained_dir=/proc/og-marl-omsd-cache", "Cannot write the pretrained cache directory"),
        ("vault_dir={file}/vaults", "Cannot write the vault directory"),
    ],
)
def test_unwritable_output_directory_is_one_clear_error(setting, what, tmp_path, small_vault_dir):
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(UserError, match=what) as error:
        runner.run(run_config(*fast_overrides(tmp_path, small_vault_dir, setting.format(file=blocker))))
    assert "=<path>" in str(error.value)
    assert sorted(os.listdir(tmp_path)) == ["not_a_directory"]


def test_full_disk_during_a_vault_write_leaves_no_partial_dataset(tmp_path, monkeypatch):
    from flashbax.vault import Vault

    real_write = Vault.write

    def write_then_disk_full(self, state, source_interval=(0, 0), dest_interval=None):
        real_write(self, state, source_interval=(0, 1000))  # part of the data reaches the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Vault, "write", write_then_disk_full)
    vault_dir = tmp_path / "vaults"
    with pytest.raises(UserError, match="No space left on device") as error:
        runner.run(run_config(*fast_overrides(tmp_path, vault_dir)))
    assert "GMM" in str(error.value) and "run the same command again" in str(error.value)
    left = [name for _, _, names in os.walk(vault_dir) for name in names]
    assert all(name.endswith(".lock") for name in left), left  # no dataset, no partial write: only the generation lock
    assert bandit_location(str(vault_dir)).available() == []
    assert_nothing_written(tmp_path)


# ---------------------------------------------------------------------------- the command line
def test_cli_prints_one_paragraph_and_exits_non_zero_without_traceback(tmp_path):
    vault_dir = bad_vault(tmp_path, three_agents)
    command = [
        sys.executable,
        "-m",
        "og_marl_omsd.run",
        "dataset=Bad",
        f"vault_dir={vault_dir}",
        f"runs_root={tmp_path / 'runs'}",
        f"pretrained_dir={tmp_path / 'pretrained'}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "agent count: expected 2" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert_nothing_written(tmp_path)


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


# ---------------------------------------------------------------------------- NaN guard
@pytest.mark.slow
@pytest.mark.parametrize(
    "stage,first_poisoned_sample",
    [
        ("critic_joint", 13),
        ("behaviour_sequential", 20 + 13),
        ("actors", 40 + 13),
    ],
)
def test_nan_loss_stops_the_run_naming_stage_step_and_intact_checkpoint(
    stage, first_poisoned_sample, tmp_path, small_vault_dir, monkeypatch
):
    """Batches turn NaN from the 13th step of ``stage`` on; checkpoints every 5 steps."""
    import tensorflow as tf

    from og_marl_omsd.runner import device_data
    from og_marl_omsd.support.checkpoints import read_state

    # Batches are drawn on the device inside the compiled steps: count the draws there.
    draws = tf.Variable(0, dtype=tf.int64, trainable=False)
    sample = device_data.DeviceDataset.sample

    def poisoned_sample(self, rng, reward_scale=1.0):
        batch = sample(self, rng, reward_scale)
        poisoned = draws.assign_add(1) >= first_poisoned_sample
        nan = lambda x: tf.where(poisoned, tf.fill(tf.shape(x), float("nan")), x)  # noqa: E731
        return {**batch, **{key: nan(batch[key]) for key in ("observations", "reward", "state", "next_state")}}

    monkeypatch.setattr(device_data.DeviceDataset, "sample", poisoned_sample)
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as error:
        runner.run(run_config(*fast_overrides(tmp_path, small_vault_dir, f"run_dir={run_dir}")))
    message = str(error.value)
    stage_dir = next((run_dir / "checkpoints").glob(f"{stage}*"))
    good = stage_dir / "step-000000010"
    assert f"Stage {stage} stopped" in message and "at step 13" in message, message
    assert f"{good} (step 10)" in message and "not overwritten" in message
    assert (stage_dir / "LATEST").read_text() == good.name and read_state(str(good))["step"] == 10
    assert {p.name for p in stage_dir.iterdir()} == {"LATEST", good.name, "step-000000005"}  # and the previous one
    reader = tf.train.load_checkpoint(str(good / "ckpt"))
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), name
    assert not (run_dir / "results.json").exists()
    cached = [p.name for p in (tmp_path / "pretrained").iterdir()] if (tmp_path / "pretrained").exists() else []
    assert not any(p.startswith(stage) for p in cached)  # a NaN model is never cached


# ---------------------------------------------------------------------------- determinism
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
