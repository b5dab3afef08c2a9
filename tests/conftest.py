"""Shared fixtures: one bandit vault per test session, and quiet TF."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OG_MARL_OMSD_HOST", os.environ.get("OG_MARL_OMSD_HOST", "auto"))

import pytest  # noqa: E402

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
        "training_steps=20", "evaluation_every=10", "num_eval_episodes=2",
        "system.critic_steps=20", "system.behaviour_steps=20", "system.pretrain_log_every=10",
        f"vault_dir={vault_dir}", f"pretrained_dir={tmp_path / 'pretrained'}", f"runs_root={tmp_path / 'runs'}",
    ]
