"""BC: behaviour cloning with decentralised deterministic actors, the comparison's simplest baseline.

The actor stage every system shares (:class:`~og_marl_omsd.systems.actors.ActorSystem`: the
same actors, optimiser, learning-rate schedule, budget, batches drawn on the device, checkpoints
and evaluation as the score-regularised systems), as it is, with the loss that regresses each
agent's action on the dataset's (:func:`~og_marl_omsd.models.losses.behaviour_cloning_loss`).
Nothing is pretrained; its hyperparameters are the actors' and the execution settings
(:data:`~og_marl_omsd.systems.stage_configs.ACTOR_CONFIGS`).
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from og_marl_omsd.models.losses import behaviour_cloning_loss
from og_marl_omsd.systems.actors import ActorSystem


class BCSystem(ActorSystem):
    """Decentralised deterministic behaviour cloning (``reward_scale`` is taken and unused)."""

    def actor_loss(self, batch: Dict[str, tf.Tensor], actions: tf.Tensor) -> tf.Tensor:
        return behaviour_cloning_loss(actions, batch["actions"])
