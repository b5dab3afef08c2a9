"""Shared fixtures: one bandit vault per test session, and quiet TF."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OG_MARL_OMSD_HOST", os.environ.get("OG_MARL_OMSD_HOST", "auto"))
# In-process entry points (main() of the CLIs) must not put a filter on pytest's stderr:
# tests see every line; tests/test_quiet.py checks the quiet default in subprocesses.
os.environ.setdefault("OG_MARL_OMSD_VERBOSE", "1")

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def bandit_vault_dir(tmp_path_factory) -> str:
    """A vault directory holding the bandit's GMM dataset (generated once per session)."""
    from og_marl_omsd.datasets.generate import ensure_datasets

    vault_dir = str(tmp_path_factory.mktemp("vaults"))
    ensure_datasets("bandit", rel_dir=vault_dir)
    return vault_dir


def quick_run_overrides(tmp_path, vault_dir: str) -> list:
    """Runner overrides for a few-second run that writes only under ``tmp_path``."""
    return [
        "training_steps=20",
        "evaluation_every=10",
        "num_eval_episodes=2",
        "system.critic_steps=20",
        "system.behaviour_steps=20",
        "system.pretrain_log_every=10",
        f"vault_dir={vault_dir}",
        f"pretrained_dir={tmp_path / 'pretrained'}",
        f"runs_root={tmp_path / 'runs'}",
    ]


@pytest.fixture(scope="session")
def small_vault_dir(tmp_path_factory) -> str:
    """A vault directory whose bandit dataset ``GMM`` has only 20,000 steps (fast runs)."""
    from og_marl_omsd.datasets.vaults import write_dataset
    from og_marl_omsd.environments.bandit import generate_bandit_experience

    vault_dir = str(tmp_path_factory.mktemp("small_vaults"))
    write_dataset(bandit_location(vault_dir), "GMM", generate_bandit_experience(20_000, seed=0))
    return vault_dir


def bandit_location(vault_dir: str):
    """Where the bandit's datasets live under ``vault_dir``."""
    from og_marl_omsd.datasets.vaults import VaultLocation

    return VaultLocation("og_marl_omsd", "bandit", "2agent_gmm", vault_dir)


def run_config(*overrides: str):
    """The runner's config composed in-process, as ``python -m og_marl_omsd.run <overrides>`` would."""
    from hydra import compose, initialize_config_module

    import og_marl_omsd.runner.run  # noqa: F401 (registers the run schema)

    with initialize_config_module(config_module="og_marl_omsd.configs", version_base=None):
        return compose(config_name="config", overrides=list(overrides))
