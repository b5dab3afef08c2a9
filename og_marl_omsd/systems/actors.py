"""The actor stage every system of the plugin shares: deterministic actors, their schedule, the
compiled training loop on device batches, checkpoints and evaluation.

:class:`ActorSystem` is an OG-MARL ``BaseOfflineSystem`` whose ``train`` runs
``steps_per_call`` actor steps per compiled call (:meth:`ActorSystem._actor_steps`, the one
actor-update path) on batches drawn on the device, evaluating, logging and checkpointing at
call boundaries. Adam's rate follows :func:`~og_marl_omsd.models.losses.cosine_decay` over the
actor steps. A system supplies :meth:`ActorSystem.actor_loss` (BC, :mod:`og_marl_omsd.systems.bc`,
does nothing else); the score-regularised systems (:mod:`og_marl_omsd.systems.base`) add a
critic and a behaviour stage before it.

Hyperparameters are declared once, in the stage configs a system names in ``config_types``
(:mod:`og_marl_omsd.systems.stage_configs`): the constructor takes exactly those keywords
(its signature is generated from them), plus ``reward_scale`` and ``seed``, which the runner sets.
"""

from __future__ import annotations

import time
import zlib
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Type, cast

import numpy as np
import sonnet as snt
import tensorflow as tf

from og_marl_omsd.host import BaseOfflineSystem
from og_marl_omsd.models.losses import cosine_decay, team_reward
from og_marl_omsd.models.networks import DeterministicActors
from og_marl_omsd.runner.device_data import DeviceDataset, chunk_size, repeat_steps
from og_marl_omsd.support import progress
from og_marl_omsd.support.checkpoints import FiniteGuard, StageCheckpoint, reseed_sampler
from og_marl_omsd.systems.stage_configs import (
    ACTOR_CONFIGS,
    RUNNER_SET,
    ActorConfig,
    ExecutionConfig,
    StageConfig,
    config_problems,
    constructor_signature,
    hyperparameter_problems,
    hyperparameter_table,
)


def derived_seed(seed: int, label: str) -> int:
    """A stable per-purpose seed, so each stage's randomness depends only on (seed, stage)."""
    return (int(seed) * 1_000_003 + zlib.crc32(label.encode())) % (2**31 - 1)


def experience_to_tensors(experience: Dict[str, Any]) -> Dict[str, Any]:
    """Host replay samples (jax or numpy arrays) as float32 tensors."""
    return tf.nest.map_structure(lambda x: tf.convert_to_tensor(np.asarray(x), tf.float32), experience)


def transition_batch(experience: Dict[str, Any], reward_scale: float) -> Dict[str, tf.Tensor]:
    """Transitions from sampled sequences ``(B, T>=2, ...)``: what a device batch holds
    (:meth:`~og_marl_omsd.runner.device_data.DeviceDataset.sample`), from a host sample.

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


class _OneBatch:
    """A given batch in the place of a :class:`DeviceDataset` (:meth:`ActorSystem.train_step`)."""

    def __init__(self, batch: Dict[str, tf.Tensor]):
        self.batch = batch

    def sample(self, rng: tf.random.Generator) -> Dict[str, tf.Tensor]:
        return self.batch

    def zeros(self, key: str) -> tf.Tensor:
        return tf.zeros_like(self.batch[key])


def raise_problems(problems: List[str]) -> None:
    if problems:
        raise ValueError("Invalid system hyperparameters: " + "; ".join(problems) + ".")


class ActorSystem(BaseOfflineSystem):
    """Deterministic actors ``a_i = pi_i(o_i)`` trained by :meth:`actor_loss` (Adam, cosine decay to 0).

    Args:
        environment, logger: as OG-MARL's ``BaseOfflineSystem``.
        **hyperparameters: those of ``config_types`` (each declared once in
            :mod:`~og_marl_omsd.systems.stage_configs`, with its default and doc line; see the
            signature), plus ``reward_scale`` (the runner's, from ``task.reward_normalisation``)
            and ``seed`` (network initialisation and all sampling).
    """

    config_types: ClassVar[Tuple[Type[StageConfig], ...]] = ACTOR_CONFIGS
    centralised_actor = False  # one actor for the joint action (BRPO-JAL)
    training_step_ctr: int  # the host's counter of actor steps

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _sign_constructor(cls)

    def __init__(self, environment: Any, logger: Any, **hyperparameters: Any):
        values = self.hyperparameter_values(hyperparameters)
        super().__init__(environment=environment, logger=logger)
        self._stage_configs = self.checked_stage_configs(values)
        self.actor_config = cast(ActorConfig, self._stage_configs[0])
        execution = cast(ExecutionConfig, self._stage_configs[-1])
        self.reward_scale = float(values["reward_scale"])
        self.seed = int(values["seed"])
        self.pretrain_log_every = execution.pretrain_log_every
        self.steps_per_call = execution.steps_per_call
        self._jit_compile = execution.jit_compile
        self.num_agents = len(environment.agents)
        self.action_dim = int(environment.num_actions)
        self.observation_dim = int(np.prod(environment.observation_shape))
        self.state_dim = int(np.prod(environment.state_shape))
        self._checkpointing: Optional[Dict[str, Any]] = None
        self._progress: Optional[progress.Progress] = None
        self.stage_steps: Dict[str, int] = {}  # steps each pretraining stage completed (or its cached copy did)
        self._build_actor_stage(self.actor_config)

    # ------------------------------------------------------------------ hyperparameters
    @classmethod
    def hyperparameter_values(cls, given: Mapping[str, Any]) -> Dict[str, Any]:
        """``given`` with every other keyword at its default.

        Raises:
            TypeError: for a keyword the constructor does not take.
        """
        defaults = {hp.name: hp.default for hp in hyperparameter_table(cls.config_types)} | RUNNER_SET
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise TypeError(f"{cls.__name__}() got unexpected keyword argument(s) {', '.join(unknown)}")
        return {**defaults, **given}

    @classmethod
    def stage_configs(cls, values: Mapping[str, Any]) -> Tuple[StageConfig, ...]:
        """The configs of ``config_types`` from the flat hyperparameters ``values``."""
        return tuple(config.from_values(values) for config in cls.config_types)

    @classmethod
    def checked_stage_configs(cls, values: Mapping[str, Any]) -> Tuple[StageConfig, ...]:
        """:meth:`stage_configs`, checked.

        Raises:
            ValueError: listing every invalid hyperparameter.
        """
        configs = cls.stage_configs(values)
        raise_problems(config_problems(*configs))
        return configs

    @classmethod
    def check_parameters(cls, **params: Any) -> None:
        """The constructor's hyperparameter checks, before anything is built (the runner's early check).

        Raises:
            ValueError: listing every invalid hyperparameter.
        """
        values = {hp.name: hp.default for hp in hyperparameter_table(cls.config_types)} | RUNNER_SET | params
        raise_problems(hyperparameter_problems(values, cls.config_types))

    @classmethod
    def run_experiment(cls, cfg: Any) -> Dict[str, Any]:
        """``og_marl.run``'s hook: a run needs this plugin's runner (pretraining stages, caches, resume)."""
        from og_marl_omsd.runner.run import run

        return run(cfg)

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

    # ------------------------------------------------------------------ before the actors
    def pretrain(
        self, replay_buffer: Any, cache: Optional[Any] = None, dataset_fingerprint: str = ""
    ) -> Dict[str, str]:
        """The stages before the actors; here none. Returns the pretrained parts' cache keys."""
        return {}

    def _check_ready_for_actors(self) -> None:
        """Raise when a stage the actors need has not run (here: always ready)."""

    # ------------------------------------------------------------------ the actor stage
    def _build_actor_stage(self, config: ActorConfig) -> None:
        """The actors (created under the seed), their optimiser, random streams and counters."""
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
        self._actor_lr = tf.Variable(config.learning_rate, trainable=False, name="actor_lr")
        self.actor_optimizer = snt.optimizers.Adam(learning_rate=self._actor_lr)
        self._rng = tf.random.Generator.from_seed(derived_seed(self.seed, "actor_updates"))
        self._batch_rng = tf.random.Generator.from_seed(derived_seed(self.seed, "batches/actors"))
        self._actor_step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="actor_step")
        self._actor_total = tf.Variable(1, dtype=tf.int64, trainable=False, name="actor_total")
        self._compiled_actor_steps: Dict[int, Any] = {}
        self._compiled_train_step: Optional[Any] = None
        self._actor_guard = FiniteGuard(name="actor_guard")
        self._total_actor_steps = 1
        self._actor_checkpoint: Optional[StageCheckpoint] = None
        self._tf_act = tf.function(self.actors, jit_compile=self._jit_compile)
        self._numpy_actors: Optional[Any] = None  # NumpyActors while evaluate() runs

    def restart_actor_training(self) -> None:
        """Start the actor stage afresh (initial actor weights, optimiser state, step counter and
        noise streams); what was pretrained and the compiled update are kept.

        Raises:
            RuntimeError: with checkpointing enabled (a restart would mix two actor runs in one
                checkpoint directory; give each run its own run directory).
        """
        if self._checkpointing is not None:
            raise RuntimeError(
                "restart_actor_training cannot be combined with enable_checkpointing: give each "
                "actor run its own run directory."
            )
        for variable, value in zip(self.actors.variables, self._initial_actor_weights):
            variable.assign(value)
        for variable in self.actor_optimizer.variables:
            variable.assign(tf.zeros_like(variable))
        self._rng.reset_from_seed(derived_seed(self.seed, "actor_updates"))
        self._batch_rng.reset_from_seed(derived_seed(self.seed, "batches/actors"))
        self._actor_guard.reset(0)
        self.training_step_ctr = 0

    def train(
        self,
        replay_buffer: Any,
        training_steps: int = int(1e5),
        evaluation_every: Optional[int] = 5000,
        num_eval_episodes: int = 32,
    ) -> None:
        """OG-MARL's training loop for ``training_steps`` more actor steps: evaluate every
        ``evaluation_every`` steps and 10x the episodes at the end, log each compiled call of
        ``steps_per_call`` steps on batches drawn on the device.

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

    def train_step(self, experience: Dict[str, Any]) -> Dict[str, Any]:
        """OG-MARL's per-step interface: one host sample through the compiled actor step
        (:meth:`_actor_steps` on that batch), at the learning rate of step ``training_step_ctr``
        of ``_total_actor_steps``. :meth:`train` does not use it."""
        self._check_ready_for_actors()
        if self._compiled_train_step is None:
            self._compiled_train_step = tf.function(
                lambda batch: self._actor_steps(_OneBatch(batch), tf.constant(1, tf.int32)),
                jit_compile=self._jit_compile,
            )
        self._actor_total.assign(self._total_actor_steps)
        self._actor_step_counter.assign(self.training_step_ctr)
        return self._compiled_train_step(transition_batch(experience_to_tensors(experience), self.reward_scale))

    def _actor_steps(self, dataset: Any, count: tf.Tensor) -> Dict[str, tf.Tensor]:
        """``count`` actor steps on batches ``dataset.sample`` draws (one compiled call); the
        learning rate of each step is the cosine decay at ``_actor_step_counter``."""

        def step():
            self._actor_lr.assign(
                cosine_decay(self.actor_config.learning_rate, self._actor_step_counter, self._actor_total)
            )
            batch = dataset.sample(self._batch_rng)
            loss, current = self._actor_update(batch)
            logs = {"losses/actor_loss": loss}
            self._actor_guard.update(logs)
            self._actor_step_counter.assign_add(1)
            return logs, batch["state"], current

        initial = ({"losses/actor_loss": tf.zeros([])}, dataset.zeros("state"), dataset.zeros("actions"))
        logs, state, current = repeat_steps(step, count, initial)
        return logs | self._actor_diagnostics(state, current)

    def _actor_update(self, batch: Dict[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
        """One update of the actors on a transition batch; returns the loss and the actions
        ``(B, N, A)`` the actors took before it."""
        with tf.GradientTape() as tape:
            actions = self.actors(batch["observations"])  # (B,N,A)
            loss = self.actor_loss(batch, actions)
        variables = self.actors.trainable_variables
        self.actor_optimizer.apply(tape.gradient(loss, variables), variables)
        return loss, tf.stop_gradient(actions)

    def actor_loss(self, batch: Dict[str, tf.Tensor], actions: tf.Tensor) -> tf.Tensor:
        """The loss the actors minimise on ``batch`` at their ``actions`` ``(B, N, A)``."""
        raise NotImplementedError

    def _actor_diagnostics(self, state: tf.Tensor, current: tf.Tensor) -> Dict[str, tf.Tensor]:
        """What is logged besides the loss, from the batch and actions of the last step."""
        return {
            "charts/mean_abs_action": tf.reduce_mean(tf.abs(current)),
            "charts/actor_learning_rate": tf.identity(self._actor_lr),
        }

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


def _sign_constructor(cls: Any) -> None:
    """Give ``cls`` a constructor whose signature lists its hyperparameters with their defaults
    (what ``inspect.signature`` and the runner read); a subclass without its own ``__init__``
    gets a forwarding one, so that two classes never share a signature."""
    init = cls.__dict__.get("__init__")
    if init is None:
        inherited = cls.__init__

        def init(self: Any, environment: Any, logger: Any, **hyperparameters: Any) -> None:
            inherited(self, environment, logger, **hyperparameters)

        init.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = init
    init.__signature__ = constructor_signature(hyperparameter_table(cls.config_types))


_sign_constructor(ActorSystem)


__all__ = ["ActorSystem", "derived_seed", "experience_to_tensors", "transition_batch"]
