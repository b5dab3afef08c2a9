"""The one seam between this plugin and OG-MARL: the only module that imports ``og_marl``.

It gives the systems ``BaseOfflineSystem``, ``get_environment``, ``FlashbaxReplayBuffer``
and the loggers. When OG-MARL is importable they are OG-MARL's own; otherwise they are
the plugin's equivalents in :mod:`og_marl_omsd.standalone` (same signatures, same
behaviour, built on flashbax and gymnasium-robotics).

The environment variable ``OG_MARL_OMSD_HOST`` forces a mode:
``og_marl`` (fail if OG-MARL is missing), ``standalone`` (never import it), or ``auto``
(the default: OG-MARL when importable).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

HOST_ENV_VAR = "OG_MARL_OMSD_HOST"
_MODES = ("auto", "og_marl", "standalone")


def host_mode() -> str:
    """Return ``"og_marl"`` or ``"standalone"``: which implementation this process uses."""
    requested = os.environ.get(HOST_ENV_VAR, "auto").strip().lower() or "auto"
    if requested not in _MODES:
        raise ValueError(f"{HOST_ENV_VAR}={requested!r} is not one of {', '.join(_MODES)}.")
    available = importlib.util.find_spec("og_marl") is not None
    if requested == "og_marl" and not available:
        raise ImportError(
            f"{HOST_ENV_VAR}=og_marl but OG-MARL is not importable. Install it from its "
            "repository (pip install -e og-marl) or unset the variable."
        )
    if requested == "standalone" or not available:
        return "standalone"
    return "og_marl"


HOST = host_mode()

if HOST == "og_marl":
    from og_marl.baselines.base import BaseOfflineSystem
    from og_marl.environments import get_environment as _host_get_environment
    from og_marl.loggers import BaseLogger, JsonWriter, TerminalLogger
    from og_marl.replay_buffers import FlashbaxReplayBuffer
else:
    from og_marl_omsd.standalone.base import BaseOfflineSystem
    from og_marl_omsd.standalone.environments import get_environment as _host_get_environment
    from og_marl_omsd.standalone.loggers import BaseLogger, JsonWriter, TerminalLogger
    from og_marl_omsd.standalone.replay_buffers import FlashbaxReplayBuffer


def WandbLogger(**kwargs: Any) -> BaseLogger:  # mirrors OG-MARL's class name
    """A wandb logger, imported only when asked for.

    With OG-MARL's arguments only it is OG-MARL's ``WandbLogger`` (or the plugin's). Given
    any of ``group``, ``run_id``, ``directory`` or ``resume`` (which OG-MARL's lacks) it is
    the plugin's in both modes: grouped seeds, a resumable run id, wandb's files in the run
    directory and evaluation metrics against training steps.

    wandb is optional; with no ``WANDB_MODE`` set it runs offline so a missing API key
    never crashes a run.
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    if HOST == "og_marl" and not {"group", "run_id", "directory", "resume"} & set(kwargs):
        from og_marl.loggers import WandbLogger as _WandbLogger
    else:
        from og_marl_omsd.standalone.loggers import WandbLogger as _WandbLogger
    return _WandbLogger(**kwargs)


def og_marl_system(module: str, class_name: str) -> type:
    """One of OG-MARL's own system classes (``og_marl.baselines...``); needs the og_marl host."""
    if HOST != "og_marl":
        raise ImportError(
            f"OG-MARL's {class_name} needs OG-MARL ({HOST_ENV_VAR}={os.environ.get(HOST_ENV_VAR, 'auto')})."
        )
    import importlib

    return getattr(importlib.import_module(module), class_name)


def get_environment(source: str, env_name: str, scenario: str, seed: int = 42) -> Any:
    """Build an environment by OG-MARL's ``get_environment`` signature.

    The plugin's own environments (``bandit``) and the seeded gymnasium MaMuJoCo wrapper
    come from :mod:`og_marl_omsd.environments`; any other name goes to the host's
    ``get_environment`` (OG-MARL's when installed).
    """
    from og_marl_omsd.environments import PLUGIN_ENVIRONMENTS, make_plugin_environment

    if env_name in PLUGIN_ENVIRONMENTS:
        return make_plugin_environment(env_name, scenario, seed=seed)
    return _host_get_environment(source, env_name, scenario, seed=seed)


__all__ = [
    "HOST",
    "HOST_ENV_VAR",
    "BaseLogger",
    "BaseOfflineSystem",
    "FlashbaxReplayBuffer",
    "JsonWriter",
    "TerminalLogger",
    "WandbLogger",
    "get_environment",
    "host_mode",
    "og_marl_system",
]
