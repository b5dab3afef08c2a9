"""The plugin's environments, on OG-MARL's environment interface.

``reset() -> (observations, info)`` and ``step(actions) -> (observations, rewards,
terminals, truncations, info)`` with per-agent dicts and ``info["state"]``; attributes
``agents``, ``num_actions``, ``observation_shape``, ``state_shape``.
"""

from __future__ import annotations

import importlib
from typing import Any

# env_name (OG-MARL's ``task.env``) -> "module:factory(scenario, seed)"
PLUGIN_ENVIRONMENTS = {
    "bandit": "og_marl_omsd.environments.bandit:make_bandit",
    "gymnasium_mamujoco": "og_marl_omsd.environments.mamujoco:make_mamujoco",
}


def make_plugin_environment(env_name: str, scenario: str, seed: int = 42) -> Any:
    if env_name not in PLUGIN_ENVIRONMENTS:
        raise ValueError(f"Unknown plugin environment {env_name!r}; known: {', '.join(sorted(PLUGIN_ENVIRONMENTS))}.")
    module_name, factory = PLUGIN_ENVIRONMENTS[env_name].split(":")
    return getattr(importlib.import_module(module_name), factory)(scenario, seed=seed)
