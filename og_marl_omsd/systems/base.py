"""Score-regularised offline MARL: the shared pipeline of OMSD and the BRPO baselines.

Stage 1 (:meth:`ScoreRegularisedSystem.pretrain`): an IQL critic and a behaviour diffusion
model, trained on the dataset or loaded from the pretrained cache. Stage 2
(:meth:`train`, OG-MARL's loop of ``train_step``): deterministic actors trained with the
score-regularised surrogate of the README's Algorithm notes. A subclass sets three class attributes:

- ``critic_kind``: ``"joint"`` (``Q_tot(s, a)``) or ``"independent"`` (``Q^i(s, a_i)``);
- ``factorisation``: the behaviour score, ``"independent"``, ``"sequential"`` or ``"joint"``;
- ``centralised_actor``: one actor for the joint action (BRPO-JAL) instead of one per agent.

Every stage is resumable once :meth:`ScoreRegularisedSystem.enable_checkpointing` is
called (the runner does): each saves its networks, optimiser state, random generator,
step and replay-sampling key every N steps and continues from there when run again. Each
stage draws its batches from its own stream (seeded by ``seed`` and the stage; the behaviour
stage by ``behaviour_seed`` when that is set), so a stage's result does not depend on whether
earlier stages were trained or loaded from the cache. A non-finite loss stops a stage before
it is checkpointed or cached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import os
import time
import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import sonnet as snt
import tensorflow as tf

from og_marl_omsd.host import BaseOfflineSystem
from og_marl_omsd.models.diffusion import BehaviourDiffusion
from og_marl_omsd.models.losses import (
    decoupled_weight_decay,
    noised,
    score_regularised_actor_loss,
    team_reward,
    vp_schedule,
)
from og_marl_omsd.models.networks import DeterministicActors, IQLCritic
from og_marl_omsd.runner.device_data import DeviceDataset, chunk_size, repeat_steps
from og_marl_omsd.support import progress
from og_marl_omsd.support.checkpoints import FiniteGuard, StageCheckpoint, reseed_sampler
from og_marl_omsd.support.files import discard
from og_marl_omsd.systems.defaults import DEFAULTS
from og_marl_omsd.systems.pretraining import PretrainedCache, replay_signature, run_stage, stage_key
from og_marl_omsd.systems.stage_configs import (
    ActorConfig,
    BehaviourConfig,
    CriticConfig,
    config_problems,
    hyperparameter_problems,
    stage_configs,
)


def derived_seed(seed: int, label: str) -> int:
    """A stable per-purpose seed, so each stage's randomness depends only on (seed, stage)."""
    return (int(seed) * 1_000_003 + zlib.crc32(label.encode())) % (2**31 - 1)


def experience_to_tensors(experience: Dict[str, Any]) -> Dict[str, Any]:
    """Host replay samples (jax or numpy arrays) as float32 tensors."""
    return tf.nest.map_structure(lambda x: tf.convert_to_tensor(np.asarray(x), tf.float32), experience)


def transition_batch(experience: Dict[str, Any], reward_scale: float) -> Dict[str, tf.Tensor]:
    """Transitions from sampled sequences ``(B, T>=2, ...)``.

    ``done`` is the terminal flag; a step whose episode was truncated has no successor in
    the data, so its ``mask`` is 0 (never bootstrap across an episode boundary).
    """
    terminal = tf.reduce_max(experience["terminals"][:, 0], axis=-1)  # (B,)
    truncation = tf.reduce_max(experience["truncations"][:, 0], axis=-1)
    return {
        "observations": experience["observations"][:, 0],  # (B,N,O)
        "actions": tf.clip_by_value(experience["actions"][:, 0], -1.0, 1.0),  # (B,N,A)
        "state": experience["infos"]["state"][:, 0],  # (B,S)
        "next_state": experience["infos"]["state"][:, 1],
        "reward": team_reward(experience["rewards"][:, 0]) * reward_scale,  # (B,)
        "done": terminal,
        "mask": 1.0 - truncation * (1.0 - terminal),
    }


class ScoreRegularisedSystem(BaseOfflineSystem):
    """Pretrained IQL critic + behaviour diffusion, then score-regularised deterministic actors.

    Every keyword is a hyperparameter (``cfg["system"]`` maps one-to-one onto it).

    Args:
        environment, logger: as OG-MARL's ``BaseOfflineSystem``.
        beta: greediness of the actor update (larger = weaker behaviour regularisation).
        t_min, t_max: range of the diffusion times the regulariser reads.
        score_weight: ``"sigma_squared"`` (SRPO) or ``"one"`` (mode-seeking).
        subtract_noise: use ``e_i - z_i`` (paper) rather than ``e_i`` (SRPO code).
        actor_hidden_sizes, actor_learning_rate, shared_actor: actors (Adam, cosine decay to 0).
        critic_steps, critic_hidden_sizes, critic_learning_rate, discount, expectile,
            target_update_rate: the IQL critic.
        behaviour_steps, behaviour_learning_rate, behaviour_weight_decay, diffusion_width,
            diffusion_hidden, diffusion_blocks, diffusion_time_dim, diffusion_dropout,
            shared_behaviour_model, agent_order: the behaviour diffusion model (AdamW).
        behaviour_seed: seeds the behaviour models alone (initialisation, denoising noise and
            dropout, their batches); ``None`` = ``seed``. Changing it leaves the critic, the
            initial actors and the actor batches as they are (an A/A comparison's noise floor).
        behaviour_condition: what the behaviour models read: ``"state"`` (the global state) or
            ``"observation"`` (each agent its own observation, the authors' code; JAL's joint
            model reads all observations).
        reward_scale: multiplies the team reward for the critic (the runner sets it from
            ``task.reward_normalisation``; 1 with ``none``: raw rewards, as the authors' code).
        seed: seeds network initialisation and all sampling.
        jit_compile: XLA-compile the training steps.
        pretrain_log_every: pretraining log period in steps.
        steps_per_call: training steps per compiled call (every stage); logging, checkpoints,
            the NaN guard and evaluation happen at call boundaries. Results do not depend on it.
    """

    critic_kind = "joint"
    factorisation = "sequential"
    centralised_actor = False
    training_step_ctr: int  # the host's counter of actor steps

    def __init__(
        self,
        environment: Any,
        logger: Any,
        beta: float = DEFAULTS.beta,
        t_min: float = DEFAULTS.t_min,
        t_max: float = DEFAULTS.t_max,
        score_weight: str = DEFAULTS.score_weight,
        subtract_noise: bool = DEFAULTS.subtract_noise,
        actor_hidden_sizes: Sequence[int] = DEFAULTS.actor_hidden_sizes,
        actor_learning_rate: float = DEFAULTS.actor_learning_rate,
        shared_actor: bool = DEFAULTS.shared_actor,
        critic_steps: int = DEFAULTS.critic_steps,
        critic_hidden_sizes: Sequence[int] = DEFAULTS.critic_hidden_sizes,
        critic_learning_rate: float = DEFAULTS.critic_learning_rate,
        discount: float = DEFAULTS.discount,
        expectile: float = DEFAULTS.expectile,
        target_update_rate: float = DEFAULTS.target_update_rate,
        behaviour_steps: int = DEFAULTS.behaviour_steps,
        behaviour_learning_rate: float = DEFAULTS.behaviour_learning_rate,
        behaviour_weight_decay: float = DEFAULTS.behaviour_weight_decay,
        diffusion_width: int = DEFAULTS.diffusion_width,
        diffusion_hidden: int = DEFAULTS.diffusion_hidden,
        diffusion_blocks: int = DEFAULTS.diffusion_blocks,
        diffusion_time_dim: int = DEFAULTS.diffusion_time_dim,
        diffusion_dropout: float = DEFAULTS.diffusion_dropout,
        shared_behaviour_model: bool = DEFAULTS.shared_behaviour_model,
        agent_order: Optional[Sequence[int]] = DEFAULTS.agent_order,
        behaviour_seed: Optional[int] = DEFAULTS.behaviour_seed,
        behaviour_condition: str = DEFAULTS.behaviour_condition,
        reward_scale: float = 1.0,
        seed: int = 0,
        jit_compile: bool = DEFAULTS.jit_compile,
        pretrain_log_every: int = DEFAULTS.pretrain_log_every,
        steps_per_call: int = DEFAULTS.steps_per_call,
    ):
        flat = {name: value for name, value in locals().items() if name not in ("self", "environment", "logger")}
        flat.pop("__class__", None)  # the cell super() uses
        super().__init__(environment=environment, logger=logger)
        self.actor_config, self.critic_config, self.behaviour_config = self.checked_stage_configs(flat)
        self.subtract_noise = self.actor_config.subtract_noise
        self.reward_scale = float(reward_scale)
        self.seed = int(seed)
        self.pretrain_log_every = int(pretrain_log_every)
        if int(steps_per_call) < 1:
            raise ValueError(f"Invalid system hyperparameters: steps_per_call must be >= 1 (got {steps_per_call}).")
        self.steps_per_call = int(steps_per_call)
        self.num_agents = len(environment.agents)
        self.action_dim = int(environment.num_actions)
        self.observation_dim = int(np.prod(environment.observation_shape))
        self.state_dim = int(np.prod(environment.state_shape))
        self._build_actor_stage(self.actor_config, jit_compile)
        self._checkpointing: Optional[Dict[str, Any]] = None
        self._progress: Optional[progress.Progress] = None
        self.stage_steps: Dict[str, int] = {}  # steps each pretraining stage completed (or its cached copy did)
        self.critic: Optional[IQLCritic] = None
        self.behaviour_model: Optional[BehaviourDiffusion] = None
        self._jit_compile = jit_compile

    def _build_actor_stage(self, config: ActorConfig, jit_compile: bool) -> None:
        """The actors (created under the seed), their optimiser, random streams and compiled step."""
        # Actor-stage hyperparameters live in variables so a sweep reuses the compiled step.
        self._beta = tf.Variable(float(config.beta), trainable=False, name="beta")
        self._t_range = tf.Variable([float(config.t_min), float(config.t_max)], trainable=False, name="t_range")
        self._weight_power = tf.Variable(config.weight_power, trainable=False, name="weight_power")
        tf.random.set_seed(derived_seed(self.seed, "actors"))
        self.actors = DeterministicActors(
            self.num_agents,
            self.action_dim,
            config.hidden_sizes,
            shared=config.shared,
            centralised=self.centralised_actor,
        )
        self.actors(tf.zeros([1, self.num_agents, self.observation_dim]))  # create variables under the seed
        self._initial_actor_weights = [v.numpy() for v in self.actors.variables]
        self._actor_learning_rate = config.learning_rate
        self._actor_lr = tf.Variable(self._actor_learning_rate, trainable=False, name="actor_lr")
        self.actor_optimizer = snt.optimizers.Adam(learning_rate=self._actor_lr)
        self._rng = tf.random.Generator.from_seed(derived_seed(self.seed, "actor_updates"))
        self._batch_rng = tf.random.Generator.from_seed(derived_seed(self.seed, "batches/actors"))
        self._actor_step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="actor_step")
        self._actor_total = tf.Variable(1, dtype=tf.int64, trainable=False, name="actor_total")
        self._compiled_actor_steps: Dict[int, Any] = {}
        self._actor_guard = FiniteGuard(name="actor_guard")
        self._total_actor_steps = 1
        self._actor_checkpoint: Optional[StageCheckpoint] = None
        self._tf_actor_step = tf.function(self._actor_step, jit_compile=jit_compile)
        self._tf_act = tf.function(self.actors, jit_compile=jit_compile)
        self._numpy_actors: Optional[Any] = None  # NumpyActors while evaluate() runs

    @classmethod
    def checked_stage_configs(cls, flat: Dict[str, Any]) -> Tuple[ActorConfig, CriticConfig, BehaviourConfig]:
        """The stage configs of the flat hyperparameters ``flat``, checked (beta's rule included).

        Raises:
            ValueError: listing every invalid hyperparameter.
        """
        configs = stage_configs(flat, cls.critic_kind, cls.factorisation)
        _raise_problems(config_problems(*configs))
        return configs

    @classmethod
    def run_experiment(cls, cfg: Any) -> Dict[str, Any]:
        """``og_marl.run``'s hook: a run needs this plugin's runner (pretraining stages, caches, resume)."""
        from og_marl_omsd.runner.run import run

        return run(cfg)

    @classmethod
    def check_parameters(cls, **params: Any) -> None:
        """The constructor's hyperparameter checks, before anything is built (the runner's early check).

        Raises:
            ValueError: listing every invalid hyperparameter.
        """
        signature = inspect.signature(cls.__init__).parameters
        values = {name: p.default for name, p in signature.items() if p.default is not inspect.Parameter.empty}
        values.update(params)
        _raise_problems(hyperparameter_problems(values, cls.critic_kind, cls.factorisation))

    # ------------------------------------------------------------------ checkpoints
    def enable_checkpointing(
        self, directory: str, every: int, run_state: Any = None, dataset_fingerprint: Optional[str] = None
    ) -> None:
        """Checkpoint every stage under ``directory`` every ``every`` steps and resume from there.

        Args:
            directory: this run's checkpoint directory (one run per directory).
            every: steps between checkpoints (each stage also saves at its last step).
            run_state: saved with the actor checkpoint; an object with ``checkpoint_state()``
                and ``restore_checkpoint_state(state)`` (the runner's logger: its evaluation curve).
            dataset_fingerprint: the data's fingerprint, recorded in every checkpoint; a
                checkpoint made from other data is refused on restore.
        """
        if int(every) <= 0:
            raise ValueError(f"every must be > 0 steps, got {every}.")
        self._checkpointing = {
            "directory": directory,
            "every": int(every),
            "run_state": run_state,
            "dataset_fingerprint": dataset_fingerprint,
        }

    def _stage_checkpoint(self, stage: str, label: str, **kwargs: Any) -> Optional[StageCheckpoint]:
        if self._checkpointing is None:
            return None
        return StageCheckpoint(
            self._checkpointing["directory"],
            stage,
            self._checkpointing["every"],
            label=label,
            dataset_fingerprint=self._checkpointing.get("dataset_fingerprint"),
            **kwargs,
        )

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
    def train(
        self,
        replay_buffer: Any,
        training_steps: int = int(1e5),
        evaluation_every: Optional[int] = 5000,
        num_eval_episodes: int = 32,
    ) -> None:
        """OG-MARL's loop of :meth:`train_step` for ``training_steps`` more actor steps.

        With checkpointing enabled and a fresh actor stage, the stage first resumes from its
        newest checkpoint and then runs only the steps still missing to ``training_steps``.
        """
        self._check_ready_for_actors()
        steps = int(training_steps)
        if self.training_step_ctr == 0:
            reseed_sampler(replay_buffer, derived_seed(self.seed, "batches/actors"))
            self._batch_rng.reset_from_seed(derived_seed(self.seed, "batches/actors"))
            self._actor_guard.reset(0)
        self._total_actor_steps = max(steps + self.training_step_ctr, 1)
        checkpoint = None
        if self._checkpointing is not None and self.training_step_ctr == 0:
            checkpoint = self._stage_checkpoint(
                "actors",
                "actors",
                trackables={
                    "actors": self.actors,
                    "optimizer": self.actor_optimizer,
                    "rng": self._rng,
                    "batch_rng": self._batch_rng,
                },
                optimisers={self.actor_optimizer: self.actors.trainable_variables},
                replay_buffer=replay_buffer,
                guard=self._actor_guard,
                run_state=self._checkpointing["run_state"],
            )
            assert checkpoint is not None  # checkpointing is enabled
            self.training_step_ctr = checkpoint.restore(total=steps)
            steps -= self.training_step_ctr
        self._actor_checkpoint = checkpoint
        self._progress = progress.Progress("actors", self._total_actor_steps, start=self.training_step_ctr)
        try:
            self._train_on_device(replay_buffer, steps, evaluation_every, num_eval_episodes)
        finally:
            self._actor_checkpoint = None
            self._progress.close()

    def _train_on_device(
        self, replay_buffer: Any, steps: int, evaluation_every: Optional[int], num_eval_episodes: int
    ) -> None:
        """OG-MARL's training loop (evaluate every ``evaluation_every`` steps and 10x the
        episodes at the end; log each call), with ``steps_per_call`` actor steps per compiled
        call on batches drawn on the device."""
        dataset = DeviceDataset.of(replay_buffer)
        run_steps = self._compiled_actor_steps.get(id(dataset))
        if run_steps is None:
            run_steps = tf.function(
                lambda count: self._actor_steps(dataset, count),
                jit_compile=self._jit_compile,
                input_signature=[tf.TensorSpec([], tf.int32)],
            )
            self._compiled_actor_steps = {id(dataset): run_steps}
        self._actor_total.assign(self._total_actor_steps)
        end = self.training_step_ctr + int(steps)
        every = self._actor_checkpoint.every if self._actor_checkpoint is not None else None
        while self.training_step_ctr < end:
            if evaluation_every and self.training_step_ctr % evaluation_every == 0:
                print("EVALUATION")
                logs = self.evaluate(num_eval_episodes)
                self.logger.write(logs | {"evaluation/training_steps": self.training_step_ctr}, force=True)
            count = chunk_size(self.training_step_ctr, end, self.steps_per_call, evaluation_every, every)
            self._actor_step_counter.assign(self.training_step_ctr)
            start = time.time()
            train_logs = run_steps(tf.constant(count, tf.int32))
            elapsed = time.time() - start
            self.training_step_ctr += count
            self.logger.write(
                {
                    **train_logs,
                    "training_steps": self.training_step_ctr,
                    "time_for_training_step": elapsed / count,
                    "training_sps": count / max(elapsed, 1e-9),
                }
            )
            if self._progress is not None:
                self._progress.update(self.training_step_ctr, train_logs)
            if self._actor_checkpoint is not None:
                self._actor_checkpoint.maybe_save(self.training_step_ctr, self._total_actor_steps)
        print("FINAL EVALUATION")
        logs = self.evaluate(10 * num_eval_episodes)
        self.logger.write(logs | {"evaluation/training_steps": self.training_step_ctr}, force=True)

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
        """Start stage 2 afresh (initial actor weights, optimiser state, step counter and noise
        stream), optionally with new actor-stage hyperparameters; the pretrained critic and
        behaviour model and the compiled update are kept. This is how a beta sweep avoids
        pretraining (and compiling) again.

        Raises:
            RuntimeError: with checkpointing enabled (a restart would mix two actor runs in one
                checkpoint directory; give each sweep point its own run).
        """
        if self._checkpointing is not None:
            raise RuntimeError(
                "restart_actor_training cannot be combined with enable_checkpointing: give each "
                "actor run its own run directory."
            )
        t_range = self._t_range.numpy()
        new_t = (t_range[0] if t_min is None else t_min, t_range[1] if t_max is None else t_max)
        new_beta = self.beta if beta is None else beta
        actor = dataclasses.replace(
            self.actor_config,
            beta=new_beta,
            t_min=new_t[0],
            t_max=new_t[1],
            score_weight=self.actor_config.score_weight if score_weight is None else score_weight,
        )
        _raise_problems(actor.problems())
        self.actor_config = actor
        if score_weight is not None:
            self._weight_power.assign(actor.weight_power)
        self._beta.assign(float(new_beta))
        self._t_range.assign([float(new_t[0]), float(new_t[1])])
        for variable, value in zip(self.actors.variables, self._initial_actor_weights):
            variable.assign(value)
        for variable in self.actor_optimizer.variables:
            variable.assign(tf.zeros_like(variable))
        self._rng.reset_from_seed(derived_seed(self.seed, "actor_updates"))
        self._batch_rng.reset_from_seed(derived_seed(self.seed, "batches/actors"))
        self._actor_guard.reset(0)
        self.training_step_ctr = 0

    def _check_ready_for_actors(self) -> None:
        if self.critic is None or self.behaviour_model is None:
            raise RuntimeError(
                "Call pretrain(replay_buffer) before train(): the actors need the critic and behaviour model."
            )

    def actor_learning_rate(self, step: int) -> float:
        """Cosine decay from the initial rate to 0 over the actor steps."""
        progress = min(step / self._total_actor_steps, 1.0)
        return self._actor_learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))

    def train_step(self, experience: Dict[str, Any]) -> Dict[str, Any]:
        self._actor_lr.assign(self.actor_learning_rate(self.training_step_ctr))
        batch = transition_batch(experience_to_tensors(experience), self.reward_scale)
        logs = self._tf_actor_step(batch)  # scalar tensors; loggers convert
        if self._actor_checkpoint is not None:  # the host loop counts this step after we return
            self._actor_checkpoint.maybe_save(self.training_step_ctr + 1, self._total_actor_steps)
        if self._progress is not None:
            self._progress.update(self.training_step_ctr + 1, logs)
        return logs

    def _actor_update(self, batch: Dict[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
        """One score-regularised actor update on a transition batch; returns the loss and the
        actions ``(B, N, A)`` the actors took before it."""
        observations, state = batch["observations"], batch["state"]
        t = self._rng.uniform([tf.shape(observations)[0]], self._t_range[0], self._t_range[1])
        alpha, sigma = vp_schedule(t)
        with tf.GradientTape() as tape:
            actions = self.actors(observations)  # (B,N,A)
            current = tf.stop_gradient(actions)
            noise = self._rng.normal(tf.shape(actions))
            noisy = noised(current, alpha, sigma, noise)
            # Sequential prefixes a_<i come from the CURRENT actors (paper eq. 13).
            assert self.critic is not None and self.behaviour_model is not None  # pretrained
            condition = self.behaviour_input(observations, state)
            predicted_noise = self.behaviour_model.noise_prediction(noisy, t, condition, clean_actions=current)
            q_gradient = self.critic.action_gradient(state, current)
            loss, per_agent = score_regularised_actor_loss(
                actions,
                predicted_noise,
                noise,
                q_gradient,
                sigma**self._weight_power,
                self._beta,
                self.subtract_noise,
            )
        variables = self.actors.trainable_variables
        self.actor_optimizer.apply(tape.gradient(loss, variables), variables)
        return loss, current

    def _actor_diagnostics(self, state: tf.Tensor, current: tf.Tensor) -> Dict[str, tf.Tensor]:
        """What is logged besides the loss, from the batch and actions of the last step."""
        assert self.critic is not None  # pretrained
        q_gradient = self.critic.action_gradient(state, current)
        q1, q2 = self.critic.q_values(state, current)
        return {
            "losses/q_term": -self._beta * tf.reduce_mean(tf.reduce_sum(q_gradient * current, -1)),
            "charts/mean_policy_q": tf.reduce_mean(0.5 * (q1 + q2)),
            "charts/mean_abs_action": tf.reduce_mean(tf.abs(current)),
            "charts/actor_learning_rate": tf.identity(self._actor_lr),
        }

    def _actor_step(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """One actor step on a host batch (:meth:`train_step`, OG-MARL's per-step interface)."""
        loss, current = self._actor_update(batch)
        logs = {"losses/actor_loss": loss, **self._actor_diagnostics(batch["state"], current)}
        self._actor_guard.update(logs)
        return logs

    def _actor_steps(self, dataset: DeviceDataset, count: tf.Tensor) -> Dict[str, tf.Tensor]:
        """``count`` actor steps on device batches (one compiled call); the learning rate of
        each step follows :meth:`actor_learning_rate` from ``_actor_step_counter``."""

        def step():
            progress = tf.minimum(
                tf.cast(self._actor_step_counter, tf.float64) / tf.cast(self._actor_total, tf.float64), 1.0
            )
            rate = self._actor_learning_rate * 0.5 * (1.0 + tf.cos(math.pi * progress))
            self._actor_lr.assign(tf.cast(rate, tf.float32))
            batch = dataset.sample(self._batch_rng)
            loss, current = self._actor_update(batch)
            logs = {"losses/actor_loss": loss}
            self._actor_guard.update(logs)
            self._actor_step_counter.assign_add(1)
            return logs, batch["state"], current

        initial = ({"losses/actor_loss": tf.zeros([])}, dataset.zeros("state"), dataset.zeros("actions"))
        logs, state, current = repeat_steps(step, count, initial)
        return logs | self._actor_diagnostics(state, current)

    # ------------------------------------------------------------------ acting
    def select_actions(self, observations: Dict[str, np.ndarray], legal_actions: Any = None) -> Dict[str, np.ndarray]:
        stacked = np.stack([np.asarray(observations[agent], "float32").reshape(-1) for agent in self.agents])
        if self._numpy_actors is not None:  # inside evaluate(): the actors' weights are fixed
            actions = self._numpy_actors(stacked[None])[0]
        else:
            actions = self._tf_act(tf.convert_to_tensor(stacked[None]))[0].numpy()  # (N,A)
        return {agent: actions[i] for i, agent in enumerate(self.agents)}

    def evaluate(self, num_eval_episodes: int = 32) -> Dict[str, Any]:
        """OG-MARL's evaluation plus the environment's own statistics (``get_stats``).

        Raises:
            NonFiniteLossError: if an actor step since the stage began was not finite.
        """
        self._actor_guard.check("actors", self._actor_checkpoint)
        get_stats = getattr(self.environment, "get_stats", None)
        if callable(get_stats):
            get_stats()  # clear what earlier episodes left
        from og_marl_omsd.runner.policy import NumpyActors

        self._numpy_actors = NumpyActors.of(self.actors)  # act in numpy: a TF call per step costs ~10x more
        try:
            logs = super().evaluate(num_eval_episodes)
        finally:
            self._numpy_actors = None
        if callable(get_stats):
            logs.update({f"evaluation/{key}": value for key, value in get_stats().items()})
        return logs


def _raise_problems(problems: List[str]) -> None:
    if problems:
        raise ValueError("Invalid system hyperparameters: " + "; ".join(problems) + ".")
