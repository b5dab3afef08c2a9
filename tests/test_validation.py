"""The checks of og_marl_omsd.runner.validation on data on disk: a dataset name is a name (never a
path), a dataset that cannot be read for lack of permission is called that (never damaged,
never a full disk), and no advice deletes a dataset that was not read and found bad."""

import os
import shutil
import stat
import subprocess
import sys

import pytest

from og_marl_omsd.runner import run as runner
from og_marl_omsd.support.errors import UserError

from conftest import bandit_location, run_config

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
