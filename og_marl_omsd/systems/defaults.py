"""The hydra nodes of the systems' defaults, generated from the one declaration of each
hyperparameter (:mod:`og_marl_omsd.systems.stage_configs`).

:func:`register_system_defaults` stores the score-regularised systems' defaults as the hydra
node ``system_defaults/score_regularised`` that ``configs/system/{omsd,brpo_*}.yaml`` build on,
and the actor stage's (BC's) as ``system_defaults/actors_only`` (``configs/system/bc.yaml``), so
the YAMLs hold only the system's name and the environment presets (``configs/env/*.yaml``)
only what differs there; the command line wins over both. The nodes are plain mappings, not
typed structured configs: a typed node would coerce values (``system.beta=1`` to ``1.0``, a new
run directory) and refuse the presets' keys that BC does not take. This module imports neither
TensorFlow nor Sonnet, so composing a config stays light.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Type

from og_marl_omsd.systems.stage_configs import (
    ACTOR_CONFIGS,
    SCORE_REGULARISED_CONFIGS,
    StageConfig,
    hyperparameter_table,
)

CONFIG_GROUP = "system_defaults"
CONFIG_NAME = "score_regularised"
ACTORS_ONLY_NAME = "actors_only"  # the subset behaviour cloning (systems/bc.py) takes


class Defaults:
    """The defaults of a system with ``config_types``: ``DEFAULTS.beta``, and :meth:`to_config`."""

    def __init__(self, config_types: Sequence[Type[StageConfig]]):
        self._values = {hp.name: hp.default for hp in hyperparameter_table(config_types)}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_config(self) -> Dict[str, Any]:
        """The values as the hydra node holds them (sequences as lists), in declaration order."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in self._values.items()}


DEFAULTS = Defaults(SCORE_REGULARISED_CONFIGS)
ACTORS_ONLY_DEFAULTS = Defaults(ACTOR_CONFIGS)

# Hyperparameters added after the run directories were pinned (tests/test_system_configs_pinned.py).
# At their default they are left out of a run's identity (its directory hash and the resume check,
# ``og_marl_omsd.runner.run.run_identity``), so runs made before they existed are still found.
ADDED_AFTER_PIN = ("behaviour_seed", "behaviour_condition")


def identity_neutral(name: str, value: Any) -> bool:
    """Whether the system hyperparameter ``name`` at ``value`` leaves a run's identity as it was
    before the hyperparameter existed (one of :data:`ADDED_AFTER_PIN` at its default)."""
    if name not in ADDED_AFTER_PIN:
        return False
    return bool(value == DEFAULTS.to_config()[name])


def register_system_defaults() -> None:
    """Store :data:`DEFAULTS` as the hydra config ``system_defaults/score_regularised``, and
    :data:`ACTORS_ONLY_DEFAULTS` as ``system_defaults/actors_only`` (``system/bc.yaml``)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group=CONFIG_GROUP, name=CONFIG_NAME, node=DEFAULTS.to_config(), provider="og-marl-omsd")
    store.store(
        group=CONFIG_GROUP, name=ACTORS_ONLY_NAME, node=ACTORS_ONLY_DEFAULTS.to_config(), provider="og-marl-omsd"
    )
