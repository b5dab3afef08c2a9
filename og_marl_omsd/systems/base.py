"""Score-regularised offline MARL: the shared pipeline of OMSD and the BRPO baselines.

:class:`ScoreRegularisedSystem` extends the actor stage every system shares
(:class:`~og_marl_omsd.systems.actors.ActorSystem`: actors, schedule, compiled training loop,
checkpoints, evaluation) with two stages before it, in :meth:`ScoreRegularisedSystem.pretrain`:
an IQL critic and a behaviour diffusion model, trained on the dataset or loaded from the
pretrained cache. The actors then minimise the score-regularised surrogate of the README's
Algorithm notes (:meth:`ScoreRegularisedSystem.actor_loss`). A subclass sets three class attributes:

- ``critic_kind``: ``"joint"`` (``Q_tot(s, a)``) or ``"independent"`` (``Q^i(s, a_i)``);
- ``factorisation``: the behaviour score, ``"independent"``, ``"sequential"`` or ``"joint"``;
- ``centralised_actor``: one actor for the joint action (BRPO-JAL) instead of one per agent.

Every stage is resumable once :meth:`~og_marl_omsd.systems.actors.ActorSystem.enable_checkpointing`
is called (the runner does): each saves its networks, optimiser state, random generator,
step and replay-sampling key every N steps and continues from there when run again. Each
stage draws its batches from its own stream (seeded by ``seed`` and the stage; the behaviour
stage by ``behaviour_seed`` when that is set), so a stage's result does not depend on whether
earlier stages were trained or loaded from the cache. A non-finite loss stops a stage before
it is checkpointed or cached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, Dict, Mapping, Optional, Tuple, cast

import sonnet as snt
import tensorflow as tf

from og_marl_omsd.models.diffusion import BehaviourDiffusion
from og_marl_omsd.models.losses import decoupled_weight_decay, noised, score_regularised_actor_loss, vp_schedule
from og_marl_omsd.models.networks import IQLCritic
from og_marl_omsd.runner.device_data import DeviceDataset, repeat_steps
from og_marl_omsd.support.checkpoints import FiniteGuard, reseed_sampler
from og_marl_omsd.support.files import discard
from og_marl_omsd.systems.actors import (
    ActorSystem,
    derived_seed,
    experience_to_tensors,
    raise_problems,
    transition_batch,
)
from og_marl_omsd.systems.pretraining import PretrainedCache, replay_signature, run_stage, stage_key
from og_marl_omsd.systems.stage_configs import (
    SCORE_REGULARISED_CONFIGS,
    ActorConfig,
    BehaviourConfig,
    CriticConfig,
    ExecutionConfig,
    RegulariserConfig,
    StageConfig,
    stage_configs,
)

# Re-exported: the host-side form of a batch (tests compare the device batches with it).
__all__ = ["ScoreRegularisedSystem", "derived_seed", "experience_to_tensors", "transition_batch"]


class ScoreRegularisedSystem(ActorSystem):
    """Pretrained IQL critic + behaviour diffusion, then score-regularised deterministic actors.

    Every keyword is a hyperparameter of :data:`~og_marl_omsd.systems.stage_configs.SCORE_REGULARISED_CONFIGS`
    (``cfg["system"]`` maps one-to-one onto them; each is declared once, with its default, doc
    line and rules, in :mod:`~og_marl_omsd.systems.stage_configs`), plus ``reward_scale`` and ``seed``.
    """

    config_types = SCORE_REGULARISED_CONFIGS
    critic_kind = "joint"
    factorisation = "sequential"

    def __init__(self, environment: Any, logger: Any, **hyperparameters: Any):
        super().__init__(environment, logger, **hyperparameters)
        self.critic_config = cast(CriticConfig, self._stage_configs[1])
        self.behaviour_config = cast(BehaviourConfig, self._stage_configs[2])
        self.critic: Optional[IQLCritic] = None
        self.behaviour_model: Optional[BehaviourDiffusion] = None

    @classmethod
    def stage_configs(cls, values: Mapping[str, Any]) -> Tuple[StageConfig, ...]:
        return (*stage_configs(values, cls.critic_kind, cls.factorisation), ExecutionConfig.from_values(values))

    @property
    def regulariser(self) -> RegulariserConfig:
        return cast(RegulariserConfig, self.actor_config)

    @property
    def subtract_noise(self) -> bool:
        return self.regulariser.subtract_noise

    # ------------------------------------------------------------------ stage 1
    def build_critic(self) -> IQLCritic:
        config = self.critic_config
        tf.random.set_seed(derived_seed(config.seed, f"critic/{config.kind}"))
        critic = IQLCritic(config.kind, self.num_agents, config.hidden_sizes)
        state = tf.zeros([1, self.state_dim])
        critic.q_values(state, tf.zeros([1, self.num_agents, self.action_dim]))
        critic.q_values(state, tf.zeros([1, self.num_agents, self.action_dim]), target=True)
        critic.values(state)
        critic.initialise_targets()
        return critic

    def build_behaviour_model(self) -> BehaviourDiffusion:
        config = self.behaviour_config
        tf.random.set_seed(derived_seed(config.seed, f"behaviour/{config.factorisation}"))
        model = BehaviourDiffusion(
            config.factorisation,
            self.num_agents,
            self.action_dim,
            agent_order=config.agent_order,
            shared=config.shared,
            width=config.width,
            hidden=config.hidden,
            num_blocks=config.num_blocks,
            time_dim=config.time_dim,
            dropout=config.dropout,
        )
        actions = tf.zeros([1, self.num_agents, self.action_dim])
        condition = self.behaviour_input(
            tf.zeros([1, self.num_agents, self.observation_dim]), tf.zeros([1, self.state_dim])
        )
        model.noise_prediction(actions, tf.ones([1]), condition, actions)
        return model

    def behaviour_input(self, observations: tf.Tensor, state: tf.Tensor) -> tf.Tensor:
        """What the behaviour models read (``behaviour_condition``): the state ``(B, S)``, or the
        observations ``(B, N, O)``."""
        return observations if self.behaviour_config.condition == "observation" else state

    def pretrain(
        self, replay_buffer: Any, cache: Optional[PretrainedCache] = None, dataset_fingerprint: str = ""
    ) -> Dict[str, str]:
        """Train (or load from ``cache``) the critic and the behaviour model. Returns the cache keys."""
        keys = {}
        for stage, config, build, train in (
            ("critic", self.critic_config, self.build_critic, self._train_critic),
            ("behaviour", self.behaviour_config, self.build_behaviour_model, self._train_behaviour_model),
        ):
            module = build()
            key = stage_key(config, dataset_fingerprint, self.stage_context(replay_buffer))
            keys[stage] = key
            name = f"{stage}_{config.label}"
            with cache.lock(name, key) if cache is not None else contextlib.nullcontext():
                cached = cache is not None and cache.load(name, key, module, dataset_fingerprint or None)
                if cache is not None and cached:
                    print(f"[pretrain] {name}: loaded from cache {cache.path(name, key)} (key {key})", flush=True)
                else:
                    print(f"[pretrain] {name}: training {config.steps} steps (cache key {key})", flush=True)
                    reseed_sampler(replay_buffer, derived_seed(config.seed, f"batches/{name}"))
                    train(module, replay_buffer, name, key)
                    cached = (
                        cache is not None
                        and cache.save(name, key, module, config.cache_dict(), dataset_fingerprint or None) is not None
                    )
            if cached and self._checkpointing is not None:  # the cache holds it: no second copy in the run
                discard(os.path.join(self._checkpointing["directory"], f"{name}-{key}"))
            self.stage_steps[name] = int(config.steps)
            setattr(self, "critic" if stage == "critic" else "behaviour_model", module)
        return keys

    def stage_context(self, replay_buffer: Any) -> Dict[str, Any]:
        """What a pretraining stage learns from besides its config: the replay buffer's settings
        (batch size, sequence length, implementation) and compilation (part of its cache key)."""
        return {"replay": replay_signature(replay_buffer), "jit_compile": bool(self._jit_compile)}

    def _train_critic(self, critic: IQLCritic, replay_buffer: Any, name: str, key: str) -> None:
        config = self.critic_config
        q_optimizer = snt.optimizers.Adam(config.learning_rate)
        v_optimizer = snt.optimizers.Adam(config.learning_rate)
        guard = FiniteGuard(name=f"{name}_guard")

        dataset = DeviceDataset.of(replay_buffer)
        batch_rng = tf.random.Generator.from_seed(derived_seed(config.seed, f"batches/{name}"))

        def step():
            batch = dataset.sample(batch_rng, config.reward_scale)
            with tf.GradientTape() as tape:
                v_loss = critic.value_loss(batch["state"], batch["actions"], config.expectile)
            v_optimizer.apply(tape.gradient(v_loss, critic.value_variables), critic.value_variables)
            with tf.GradientTape() as tape:
                q_loss = critic.q_loss(
                    batch["state"],
                    batch["actions"],
                    batch["reward"],
                    batch["next_state"],
                    batch["done"],
                    batch["mask"],
                    config.discount,
                )
            q_optimizer.apply(tape.gradient(q_loss, critic.q_variables), critic.q_variables)
            critic.update_targets(config.target_update_rate)
            logs = {"value_loss": v_loss, "q_loss": q_loss}
            guard.update(logs)
            return logs, batch["state"], batch["actions"]

        def steps(count):
            initial = (
                {"value_loss": tf.zeros([]), "q_loss": tf.zeros([])},
                dataset.zeros("state"),
                dataset.zeros("actions"),
            )
            logs, state, actions = repeat_steps(step, count, initial)
            q1, _ = critic.q_values(state, actions)  # logged only: once per call, on the last batch
            return logs | {"mean_q": tf.reduce_mean(q1)}

        trackables = {"critic": critic, "q_optimizer": q_optimizer, "v_optimizer": v_optimizer, "batch_rng": batch_rng}
        optimisers = {q_optimizer: critic.q_variables, v_optimizer: critic.value_variables}
        self._run_pretraining_stage(name, key, steps, config.steps, replay_buffer, guard, trackables, optimisers)

    def _train_behaviour_model(self, model: BehaviourDiffusion, replay_buffer: Any, name: str, key: str) -> None:
        config = self.behaviour_config
        optimizer = snt.optimizers.Adam(config.learning_rate)
        rng = tf.random.Generator.from_seed(derived_seed(config.seed, f"behaviour_updates/{config.factorisation}"))
        decay = config.learning_rate * config.weight_decay
        guard = FiniteGuard(name=f"{name}_guard")

        dataset = DeviceDataset.of(replay_buffer)
        batch_rng = tf.random.Generator.from_seed(derived_seed(config.seed, f"batches/{name}"))

        def step():
            batch = dataset.sample(batch_rng)
            variables = model.trainable_variables
            with tf.GradientTape() as tape:
                condition = self.behaviour_input(batch["observations"], batch["state"])
                loss = model.loss(batch["actions"], condition, rng)
            gradients = tape.gradient(loss, variables)
            decoupled_weight_decay(variables, decay)  # AdamW: the decay, then the Adam step
            optimizer.apply(gradients, variables)
            logs = {"denoising_loss": loss}
            guard.update(logs)
            return logs

        def steps(count):
            return repeat_steps(step, count, {"denoising_loss": tf.zeros([])})

        trackables = {"model": model, "optimizer": optimizer, "rng": rng, "batch_rng": batch_rng}
        optimisers = {optimizer: model.trainable_variables}
        self._run_pretraining_stage(name, key, steps, config.steps, replay_buffer, guard, trackables, optimisers)

    def _run_pretraining_stage(
        self,
        name: str,
        key: str,
        steps: Any,
        total: int,
        replay_buffer: Any,
        guard: FiniteGuard,
        trackables: Dict[str, Any],
        optimisers: Dict[Any, Any],
    ) -> None:
        """Compile ``steps(count)`` and run it for ``total`` steps, checkpointed (``trackables``)
        and resumed in ``<name>-<key>``, logged every ``pretrain_log_every`` steps."""
        tf_steps = tf.function(steps, jit_compile=self._jit_compile, input_signature=[tf.TensorSpec([], tf.int32)])
        checkpoint = self._stage_checkpoint(
            f"{name}-{key}",
            name,
            trackables=trackables,
            optimisers=optimisers,
            replay_buffer=replay_buffer,
            guard=guard,
        )
        run_stage(
            name,
            total,
            lambda count: tf_steps(tf.constant(count, tf.int32)),
            self.logger,
            self.pretrain_log_every,
            checkpoint=checkpoint,
            guard=guard,
            steps_per_call=self.steps_per_call,
        )

    # ------------------------------------------------------------------ stage 2
    def _build_actor_stage(self, config: ActorConfig) -> None:
        super()._build_actor_stage(config)
        regulariser = cast(RegulariserConfig, config)
        # The regulariser's settings live in variables so a sweep reuses the compiled step.
        self._beta = tf.Variable(float(regulariser.beta), trainable=False, name="beta")
        self._t_range = tf.Variable(
            [float(regulariser.t_min), float(regulariser.t_max)], trainable=False, name="t_range"
        )
        self._weight_power = tf.Variable(regulariser.weight_power, trainable=False, name="weight_power")

    @property
    def beta(self) -> float:
        return float(self._beta.numpy())

    def restart_actor_training(
        self,
        beta: Optional[float] = None,
        t_min: Optional[float] = None,
        t_max: Optional[float] = None,
        score_weight: Optional[str] = None,
    ) -> None:
        """Start stage 2 afresh (:meth:`ActorSystem.restart_actor_training`), optionally with new
        regulariser settings; the pretrained critic and behaviour model and the compiled update
        are kept. This is how a beta sweep avoids pretraining (and compiling) again.

        Raises:
            RuntimeError: with checkpointing enabled.
            ValueError: for an invalid setting (nothing is changed then).
        """
        if self._checkpointing is not None:
            super().restart_actor_training()  # raises
        t_range = self._t_range.numpy()
        actor = dataclasses.replace(
            self.regulariser,
            beta=self.beta if beta is None else beta,
            t_min=t_range[0] if t_min is None else t_min,
            t_max=t_range[1] if t_max is None else t_max,
            score_weight=self.regulariser.score_weight if score_weight is None else score_weight,
        )
        raise_problems(actor.problems())
        self.actor_config = cast(ActorConfig, actor)
        self._weight_power.assign(actor.weight_power)
        self._beta.assign(float(actor.beta))
        self._t_range.assign([float(actor.t_min), float(actor.t_max)])
        super().restart_actor_training()

    def _check_ready_for_actors(self) -> None:
        if self.critic is None or self.behaviour_model is None:
            raise RuntimeError(
                "Call pretrain(replay_buffer) before train(): the actors need the critic and behaviour model."
            )

    def actor_loss(self, batch: Dict[str, tf.Tensor], actions: tf.Tensor) -> tf.Tensor:
        """The score-regularised surrogate (:func:`~og_marl_omsd.models.losses.score_regularised_actor_loss`):
        one ``t`` and noise ``z`` per sample from the actor stream, the behaviour models' noise
        prediction at the noised current actions and the critic's action gradient there."""
        observations, state = batch["observations"], batch["state"]
        t = self._rng.uniform([tf.shape(observations)[0]], self._t_range[0], self._t_range[1])
        alpha, sigma = vp_schedule(t)
        current = tf.stop_gradient(actions)
        noise = self._rng.normal(tf.shape(actions))
        noisy = noised(current, alpha, sigma, noise)
        # Sequential prefixes a_<i come from the CURRENT actors (paper eq. 13).
        assert self.critic is not None and self.behaviour_model is not None  # pretrained
        condition = self.behaviour_input(observations, state)
        predicted_noise = self.behaviour_model.noise_prediction(noisy, t, condition, clean_actions=current)
        q_gradient = self.critic.action_gradient(state, current)
        loss, _ = score_regularised_actor_loss(
            actions, predicted_noise, noise, q_gradient, sigma**self._weight_power, self._beta, self.subtract_noise
        )
        return loss

    def _actor_diagnostics(self, state: tf.Tensor, current: tf.Tensor) -> Dict[str, tf.Tensor]:
        assert self.critic is not None  # pretrained
        q_gradient = self.critic.action_gradient(state, current)
        q1, q2 = self.critic.q_values(state, current)
        return {
            "losses/q_term": -self._beta * tf.reduce_mean(tf.reduce_sum(q_gradient * current, -1)),
            "charts/mean_policy_q": tf.reduce_mean(0.5 * (q1 + q2)),
            **super()._actor_diagnostics(state, current),
        }
