"""Standalone ``get_environment``: OG-MARL's signature for the environments the plugin has.

OG-MARL's own function is an if/elif chain over ``env_name``; without OG-MARL only the
plugin's environments exist (see :mod:`og_marl_omsd.environments`).
"""

from __future__ import annotations

from typing import Any


def get_environment(source: str, env_name: str, scenario: str, seed: int = 42) -> Any:
    from og_marl_omsd.environments import PLUGIN_ENVIRONMENTS

    raise ValueError(
        f"Environment {env_name!r} is not available without OG-MARL installed. Available: "
        f"{', '.join(sorted(PLUGIN_ENVIRONMENTS))}."
    )
