"""What a non-editable install needs: vault configs and hydra configs as package data.

(``.ci/run`` also installs the package with ``pip install .`` into a fresh venv and runs the
default command from an empty directory.)
"""

from __future__ import annotations

import configparser
import fnmatch
import os

from og_marl_omsd.datasets import generate

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_vault_configs_are_found_through_the_package_not_the_checkout(tmp_path, monkeypatch):
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(generate.__file__)))
    assert os.path.dirname(generate.VAULT_CONFIG_DIR) == package_dir
    # The package's copy is the checkout's top-level vault_configs/ (edit them there).
    assert sorted(os.listdir(generate.VAULT_CONFIG_DIR)) == sorted(os.listdir(os.path.join(REPO_ROOT, "vault_configs")))
    monkeypatch.chdir(tmp_path)  # an empty directory elsewhere
    config = generate.load_vault_config("2halfcheetah-quick")
    assert config["name"] == "2halfcheetah-quick" and config["env"] == "gymnasium_mamujoco"


def test_every_file_the_package_reads_at_run_time_is_package_data():
    setup = configparser.ConfigParser()
    setup.read(os.path.join(REPO_ROOT, "setup.cfg"))
    patterns = [p.strip() for p in setup["options.package_data"]["og_marl_omsd"].split(",")]
    package_dir = os.path.join(REPO_ROOT, "og_marl_omsd")
    needed = []
    for folder in ("configs", "vault_configs", os.path.join("upstream", "templates")):
        for root, _, names in os.walk(os.path.join(package_dir, folder)):
            needed += [
                os.path.relpath(os.path.join(root, n), package_dir) for n in names if not n.endswith((".py", ".pyc"))
            ]
    assert needed
    missing = [path for path in needed if not any(fnmatch.fnmatch(path, pattern) for pattern in patterns)]
    assert missing == [], f"add to setup.cfg [options.package_data]: {missing}"
    assert "hydra_plugins" in setup["options.packages.find"]["include"]
