"""BC: behaviour cloning with decentralised deterministic actors, the comparison's simplest baseline.

The same actors (``pi_i(o_i)``, same network and sizes), optimiser, learning-rate schedule,
budget, batches drawn on the device, checkpoints and evaluation as the score-regularised
systems' actor stage; the update regresses each agent's action on the dataset's
(:func:`~og_marl_omsd.models.losses.behaviour_cloning_loss`). Nothing is pretrained.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf

from og_marl_omsd.models.losses import behaviour_cloning_loss
from og_marl_omsd.systems.base import ScoreRegularisedSystem
from og_marl_omsd.systems.defaults import DEFAULTS


class BCSystem(ScoreRegularisedSystem):
    """Decentralised deterministic behaviour cloning.

    Args:
        environment, logger: as OG-MARL's ``BaseOfflineSystem``.
        actor_hidden_sizes, actor_learning_rate, shared_actor: the actors (Adam, cosine decay
            to 0 over the training steps), as in the score-regularised systems.
        reward_scale: unused (BC ignores rewards); set by the runner.
        seed: seeds initialisation and batches.
        jit_compile, steps_per_call: as in the score-regularised systems.
    """

    centralised_actor = False

    def __init__(
        self,
        environment: Any,
        logger: Any,
        actor_hidden_sizes: Sequence[int] = DEFAULTS.actor_hidden_sizes,
        actor_learning_rate: float = DEFAULTS.actor_learning_rate,
        shared_actor: bool = DEFAULTS.shared_actor,
        reward_scale: float = 1.0,
        seed: int = 0,
        jit_compile: bool = DEFAULTS.jit_compile,
        steps_per_call: int = DEFAULTS.steps_per_call,
    ):
        super().__init__(
            environment,
            logger,
            actor_hidden_sizes=actor_hidden_sizes,
            actor_learning_rate=actor_learning_rate,
            shared_actor=shared_actor,
            critic_steps=0,
            behaviour_steps=0,
            reward_scale=reward_scale,
            seed=seed,
            jit_compile=jit_compile,
            steps_per_call=steps_per_call,
        )
        self.critic_config = None  # type: ignore[assignment]  # no pretraining stages
        self.behaviour_config = None  # type: ignore[assignment]

    @classmethod
    def check_parameters(cls, **params: Any) -> None:
        """The per-setting rules of its parameters (``steps_per_call=0`` fails here, before a run starts).

        Raises:
            ValueError: listing every invalid hyperparameter.
        """
        from og_marl_omsd.systems.stage_configs import SYSTEM_RULES
        from og_marl_omsd.upstream.og_marl_run import rule_problems

        problems = rule_problems(params, SYSTEM_RULES)
        if problems:
            raise ValueError("Invalid system hyperparameters: " + "; ".join(problems) + ".")

    def pretrain(
        self, replay_buffer: Any, cache: Optional[Any] = None, dataset_fingerprint: str = ""
    ) -> Dict[str, str]:
        """BC pretrains nothing (no critic, no behaviour model): returns no cache keys."""
        return {}

    def _check_ready_for_actors(self) -> None:
        """Always ready: BC needs no pretrained part."""

    def restart_actor_training(self, *_: Any, **__: Any) -> None:
        raise NotImplementedError("BC has no actor-stage hyperparameters to sweep; give each run its own run.")

    def _actor_update(self, batch: Dict[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            actions = self.actors(batch["observations"])  # (B,N,A)
            loss = behaviour_cloning_loss(actions, batch["actions"])
        variables = self.actors.trainable_variables
        self.actor_optimizer.apply(tape.gradient(loss, variables), variables)
        return loss, tf.stop_gradient(actions)

    def _actor_diagnostics(self, state: tf.Tensor, current: tf.Tensor) -> Dict[str, tf.Tensor]:
        return {
            "charts/mean_abs_action": tf.reduce_mean(tf.abs(current)),
            "charts/actor_learning_rate": tf.identity(self._actor_lr),
        }
