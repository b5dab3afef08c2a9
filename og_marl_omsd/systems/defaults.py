"""The score-regularised systems' hyperparameters and their defaults, declared once.

:class:`SystemDefaults` is the one declaration: the flat keyword constructor of
:class:`~og_marl_omsd.systems.base.ScoreRegularisedSystem` (OG-MARL's interface) takes its
defaults from :data:`DEFAULTS`, and :func:`register_system_defaults` stores the same values as
the hydra node ``system_defaults/score_regularised`` that ``configs/system/{omsd,brpo_*}.yaml``
build on, so the YAMLs hold only the system's name and the environment presets
(``configs/env/*.yaml``) only what differs there; the command line wins over both. Values are
SRPO's unless noted (README, Algorithm notes). This module imports neither TensorFlow nor
Sonnet, so composing a config stays light.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

CONFIG_GROUP = "system_defaults"
CONFIG_NAME = "score_regularised"
# The subset behaviour cloning (systems/bc.py) takes: the actors, their optimiser and compilation.
ACTORS_ONLY_NAME = "actors_only"
ACTORS_ONLY_FIELDS = ("actor_hidden_sizes", "actor_learning_rate", "shared_actor", "jit_compile", "steps_per_call")


@dataclasses.dataclass(frozen=True)
class SystemDefaults:
    """Each hyperparameter of OMSD and the BRPO systems with its default (one field each)."""

    beta: float = 0.1  # greediness: larger = weaker behaviour regularisation
    t_min: float = 0.02  # diffusion times the regulariser reads: t ~ U[t_min, t_max]
    t_max: float = 0.98
    score_weight: str = "sigma_squared"  # w(t): sigma_squared (SRPO) or one (mode-seeking)
    subtract_noise: bool = True  # e_i - z_i (paper) instead of e_i (SRPO code)
    actor_hidden_sizes: Tuple[int, ...] = (256, 256)
    actor_learning_rate: float = 3e-4  # Adam, cosine decay to 0 over training_steps
    shared_actor: bool = False
    critic_steps: int = 100_000  # IQL critic budget (SRPO: 1.5M)
    critic_hidden_sizes: Tuple[int, ...] = (256, 256)
    critic_learning_rate: float = 3e-4
    discount: float = 0.99
    expectile: float = 0.7
    target_update_rate: float = 0.005
    behaviour_steps: int = 100_000  # behaviour diffusion budget
    behaviour_learning_rate: float = 3e-4
    behaviour_weight_decay: float = 0.01  # AdamW
    diffusion_width: int = 256
    diffusion_hidden: int = 1024
    diffusion_blocks: int = 3
    diffusion_time_dim: int = 128
    diffusion_dropout: float = 0.1
    shared_behaviour_model: bool = False  # one network for all agents (agent one-hot, masked prefix)
    agent_order: Optional[Tuple[int, ...]] = None  # sequential order (OMSD); None = the environment's order
    behaviour_seed: Optional[int] = None  # the behaviour models' own seed (init, noise, batches); None = the run's seed
    behaviour_condition: str = "state"  # what the behaviour models read: state s, or observation o_i (the authors')
    jit_compile: bool = True
    pretrain_log_every: int = 1000
    steps_per_call: int = 50  # training steps per compiled call (logging, checkpoints, evaluation at its ends)

    def to_config(self) -> Dict[str, Any]:
        """The values as the hydra node holds them (sequences as lists), in declaration order."""
        return {
            field.name: list(value) if isinstance(value, tuple) else value
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        }


DEFAULTS = SystemDefaults()

# Hyperparameters added after the run directories were pinned (tests/test_system_configs_pinned.py).
# At their default they are left out of a run's identity (its directory hash and the resume check,
# ``og_marl_omsd.runner.run.run_identity``), so runs made before they existed are still found.
ADDED_AFTER_PIN = ("behaviour_seed", "behaviour_condition")


def identity_neutral(name: str, value: Any) -> bool:
    """Whether the system hyperparameter ``name`` at ``value`` leaves a run's identity as it was
    before the hyperparameter existed (one of :data:`ADDED_AFTER_PIN` at its default)."""
    if name not in ADDED_AFTER_PIN:
        return False
    default = getattr(DEFAULTS, name)
    return bool(value == (list(default) if isinstance(default, tuple) else default))


def register_system_defaults() -> None:
    """Store :data:`DEFAULTS` as the hydra config ``system_defaults/score_regularised``, and its
    actor fields (:data:`ACTORS_ONLY_FIELDS`) as ``system_defaults/actors_only`` (``system/bc.yaml``)."""
    from hydra.core.config_store import ConfigStore

    values = DEFAULTS.to_config()
    store = ConfigStore.instance()
    store.store(group=CONFIG_GROUP, name=CONFIG_NAME, node=values, provider="og-marl-omsd")
    actors_only = {name: values[name] for name in ACTORS_ONLY_FIELDS}
    store.store(group=CONFIG_GROUP, name=ACTORS_ONLY_NAME, node=actors_only, provider="og-marl-omsd")
