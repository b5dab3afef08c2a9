"""Hydra search-path plugin: this plugin's configs (``system/omsd.yaml``, ...) for OG-MARL's runner.

Hydra imports every module of the ``hydra_plugins`` namespace package it can find; this one
adds ``pkg://og_marl_omsd.configs`` after OG-MARL's own configs when the app is
``og_marl.run`` (whose config directory is ``og_marl/configs``), so ``python -m og_marl.run
system=omsd`` composes. Other hydra apps are left alone.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


def _is_og_marl_runner(path: str) -> bool:
    normalised = path.replace("\\", "/").rstrip("/")
    return normalised.endswith(("og_marl/configs", "og_marl.configs"))


class OGMarlOMSDSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if any(entry.provider == "main" and _is_og_marl_runner(entry.path) for entry in search_path.get_path()):
            search_path.append(provider="og-marl-omsd", path="pkg://og_marl_omsd.configs")
            from og_marl_omsd.systems.defaults import register_system_defaults

            register_system_defaults()  # system_defaults/score_regularised, which system/omsd.yaml builds on
