"""og_marl_omsd.runner.validation: bad settings and bad data (shapes, NaN/inf, actions out of range,
damaged or unreadable datasets, unwritable directories) are one clear error before anything is written;
a dataset name is a name (never a path); no advice deletes a dataset that was not read and found bad."""

import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from og_marl_omsd.runner import run as runner
from og_marl_omsd.support.errors import UserError

from conftest import (
    SMALL_RUN,
    assert_nothing_written,
    bad_vault,
    bandit_location,
    fast_overrides,
    run_config,
    three_agents,
)

TINY = [
    "training_steps=4",
    "evaluation_every=2",
    "num_eval_episodes=1",
    "system.critic_steps=4",
    "system.behaviour_steps=4",
]


def _tree(path):
    """Every file under ``path`` with its size and content hash (what must stay intact)."""
    import hashlib

    found = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return found


@pytest.fixture
def vaults(tmp_path, small_vault_dir):
    vault_dir = tmp_path / "vaults"
    shutil.copytree(small_vault_dir, vault_dir)
    return vault_dir


@pytest.mark.parametrize("name", ["GMM/../GMM", "../2agent_gmm.vlt/GMM", "..", ".", ".partial-GMM-1"])
def test_dataset_name_that_is_a_path_is_refused_before_anything_is_read_or_written(name, tmp_path, vaults):
    before = _tree(vaults)
    with pytest.raises(UserError) as error:
        runner.run(
            run_config(
                *TINY,
                f"dataset={name}",
                f"vault_dir={vaults}",
                f"runs_root={tmp_path / 'runs'}",
                f"pretrained_dir={tmp_path / 'cache'}",
            )
        )
    message = str(error.value)
    assert "is not a dataset name" in message and "rm -r" not in message and "incomplete" not in message
    assert _tree(vaults) == before
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_vault_location_builds_no_path_from_a_path():
    location = bandit_location("vaults")
    for name in ("a/b", "..", ".", ""):
        with pytest.raises(ValueError, match="not a dataset name"):
            location.dataset_path(name)
    assert location.dataset_path("GMM").endswith(os.path.join("2agent_gmm.vlt", "GMM"))


def _without_permission_override():
    """The command prefix that makes this process subject to file permissions: nothing for a
    normal user; for root, ``setpriv`` dropping the capabilities that bypass them."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


@pytest.mark.parametrize("unreadable", ["chunks", "folder"])
def test_unreadable_dataset_is_a_permission_error_not_damaged_data(unreadable, tmp_path, vaults):
    dataset = bandit_location(str(vaults)).dataset_path("GMM")
    before = _tree(vaults)
    targets = [os.path.join(dataset, "d", name) for name in os.listdir(os.path.join(dataset, "d"))]
    if unreadable == "folder":
        targets = [dataset]
    modes = {target: stat.S_IMODE(os.stat(target).st_mode) for target in targets}
    for target in targets:
        os.chmod(target, 0)
    try:
        env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        result = subprocess.run(
            [
                *_without_permission_override(),
                sys.executable,
                "-m",
                "og_marl_omsd.run",
                *TINY,
                f"vault_dir={vaults}",
                f"runs_root={tmp_path / 'runs'}",
                f"pretrained_dir={tmp_path / 'cache'}",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=300,
        )
    finally:
        for target, mode in modes.items():
            os.chmod(target, mode)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    error = result.stderr
    assert "Permission denied" in error and "permission problem, not damaged data" in error and dataset in error
    for wrong in ("damaged or incomplete", "checksums", "rm -r", "Free disk space", "Traceback"):
        assert wrong not in error, error
    assert _tree(vaults) == before  # nothing generated over it, nothing removed
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
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
def test_bad_settings_stop_before_anything_is_written(override, fragment, tmp_path, small_vault_dir):
    with pytest.raises(UserError) as error:
        runner.run(
            run_config(
                *SMALL_RUN,
                override,
                f"vault_dir={small_vault_dir}",
                f"runs_root={tmp_path / 'runs'}",
                f"pretrained_dir={tmp_path / 'cache'}",
            )
        )
    assert fragment in str(error.value)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage,fragment",
    [
        ("empty", "is incomplete: it is empty"),
        ("no_metadata", "is incomplete: it has no metadata.json"),
        ("corrupt_chunk", "cannot be read"),
    ],
)
def test_damaged_dataset_is_one_paragraph_naming_the_folder(damage, fragment, tmp_path, small_vault_dir):
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
                *SMALL_RUN,
                f"vault_dir={vault_dir}",
                f"runs_root={tmp_path / 'runs'}",
                f"pretrained_dir={tmp_path / 'cache'}",
            )
        )
    assert fragment in str(error.value) and dataset in str(error.value) and "rm -r" in str(error.value)
    assert not (tmp_path / "runs").exists()


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
