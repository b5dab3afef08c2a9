"""Every hyperparameter of the plugin's systems, declared once, in the config of the stage it belongs to.

A field made by :func:`hyperparameter` is one hyperparameter: its flat name (the constructor's
keyword and the ``cfg.system`` key), default, doc line and rules, in the typed config of its
stage (:class:`ActorConfig`, :class:`RegulariserConfig`, :class:`CriticConfig`,
:class:`BehaviourConfig`, and :class:`ExecutionConfig` for how every stage runs). A system
names its configs (``config_types``); everything else is derived from these declarations:

- the constructor's keywords, defaults and signature (:func:`hyperparameter_table`,
  :func:`constructor_signature`; :class:`~og_marl_omsd.systems.actors.ActorSystem`);
- the stage configs a system builds from the flat keywords (:meth:`StageConfig.from_values`,
  :func:`stage_configs`);
- the checks (:meth:`StageConfig.problems`, :func:`hyperparameter_problems`): each setting's
  rules, then the few that relate two settings (``t_min < t_max``);
- the hydra nodes the system YAMLs build on (:mod:`og_marl_omsd.systems.defaults`).

A pretraining stage builds and trains from its config alone, and
:meth:`CriticConfig.cache_dict` / :meth:`BehaviourConfig.cache_dict` are what its cache key
hashes (:func:`~og_marl_omsd.systems.pretraining.stage_key`). Values are SRPO's unless noted
(README, Algorithm notes). This module imports neither TensorFlow nor Sonnet, so composing a
config stays light.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar

import numpy as np

from og_marl_omsd.upstream.og_marl_run import SEED_RANGE, _is_number, _whole, rule_problems

Rule = Tuple[Callable[[Any], bool], str]  # (test, what the value must be)

LAYOUT = "stacked"  # stacked per-head weights; batches drawn on the device (part of the cache key)
# What the behaviour models are conditioned on: the global state, or each agent's own observation.
BEHAVIOUR_CONDITIONS = ("state", "observation")
# The regulariser's weights w(t) = sigma_t ** power, by name (models.losses.SCORE_WEIGHT_POWERS holds the powers).
SCORE_WEIGHTS = ("sigma_squared", "one")
FLOAT32_MAX = float(np.finfo(np.float32).max)  # hyperparameters held in float32 variables stay finite
# Constructor keywords the runner sets (task.reward_normalisation, seed=): not hyperparameters of cfg.system.
RUNNER_SET = {"reward_scale": 1.0, "seed": 0}


def _positive_sizes(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_whole(v) and v >= 1 for v in value)


def _permutation(value: Any) -> bool:
    return value is None or (
        isinstance(value, (list, tuple))
        and all(_whole(v) for v in value)
        and sorted(int(v) for v in value) == list(range(len(value)))
    )


FLOAT32_RATE: Rule = (lambda v: _is_number(v) and 0 < v <= FLOAT32_MAX, "a number in (0, 3.4e38] (float32)")
SIZES: Rule = (_positive_sizes, "a non-empty list of whole numbers >= 1, e.g. [256,256]")
STEPS: Tuple[Rule, ...] = (
    (lambda v: v >= 0, ">= 0"),
    (lambda v: not _whole(v) or v <= 2**63 - 1, "at most 2**63 - 1 (an int64 step counter)"),
)
WIDTH: Rule = (lambda v: _whole(v) and v >= 1, "a whole number >= 1")


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter as its declaration gives it."""

    name: str  # the constructor's keyword and the cfg.system key
    default: Any
    doc: str
    rules: Tuple[Rule, ...]  # each checked on its own; every failing one is reported
    stage: str  # the config class that holds it
    key: str  # its field there
    pretraining_only: bool  # taken only by systems with a pretraining stage


def hyperparameter(name: str, default: Any, doc: str, *rules: Rule, pretraining_only: bool = False) -> Any:
    """Declare the hyperparameter ``name`` as a field of a stage config (see the module docstring)."""
    return dataclasses.field(
        default=default, metadata={"hyperparameter": (name, doc, tuple(rules), bool(pretraining_only))}
    )


def _convert(default: Any, value: Any) -> Any:
    """``value`` as the type of ``default`` (sizes as tuples of ints; ``None`` defaults as given)."""
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, str):
        return str(value)
    if isinstance(default, tuple):
        return tuple(int(v) for v in value)
    return value


C = TypeVar("C", bound="StageConfig")


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """A stage's typed settings; its :func:`hyperparameter` fields are declarations."""

    @classmethod
    def hyperparameters(cls) -> Tuple[Hyperparameter, ...]:
        """The hyperparameters this config declares, in field order."""
        found = []
        for field in dataclasses.fields(cls):
            if "hyperparameter" in field.metadata:
                name, doc, rules, pretraining_only = field.metadata["hyperparameter"]
                hp = Hyperparameter(name, field.default, doc, rules, cls.__name__, field.name, pretraining_only)
                found.append(hp)
        return tuple(found)

    @classmethod
    def from_values(cls: Type[C], values: Mapping[str, Any], **derived: Any) -> C:
        """The config of the flat hyperparameters ``values`` (a missing one at its default);
        ``derived`` gives the fields that are not hyperparameters."""
        given = {hp.key: _convert(hp.default, values.get(hp.name, hp.default)) for hp in cls.hyperparameters()}
        return cls(**given, **derived)

    def problems(self) -> List[str]:
        """Each hyperparameter's broken rules (field order), then :meth:`relation_problems`."""
        values = {hp.name: getattr(self, hp.key) for hp in self.hyperparameters()}
        return rule_problems_of(self.hyperparameters(), values) + self.relation_problems()

    def relation_problems(self) -> List[str]:
        """Problems of settings that are fine alone but not together."""
        return []


def rule_problems_of(table: Sequence[Hyperparameter], values: Mapping[str, Any]) -> List[str]:
    """``"<name> must be <what> (got <value>)"`` for each rule of ``table`` that ``values`` breaks."""
    return [
        problem
        for hp in table
        if hp.name in values
        for rule in hp.rules
        for problem in rule_problems({hp.name: values[hp.name]}, {hp.name: rule})
    ]


@dataclasses.dataclass(frozen=True)
class ActorConfig(StageConfig):
    """The actors of every system: deterministic ``pi_i(o_i)``, Adam with cosine decay to 0."""

    hidden_sizes: Tuple[int, ...] = hyperparameter("actor_hidden_sizes", (256, 256), "the actors' hidden layers", SIZES)
    learning_rate: float = hyperparameter(
        "actor_learning_rate", 3e-4, "Adam's initial rate, cosine decay to 0 over training_steps", FLOAT32_RATE
    )
    shared: bool = hyperparameter("shared_actor", False, "one actor network for all agents (agent one-hot)")


@dataclasses.dataclass(frozen=True)
class RegulariserConfig(StageConfig):
    """The score-regularised actor update (README, Algorithm notes, stage 2)."""

    beta: float = hyperparameter(
        "beta",
        0.1,
        "greediness of the actor update: larger = weaker behaviour regularisation",
        (lambda v: v > 0, "> 0"),
        (
            lambda v: not _is_number(v) or abs(v) <= FLOAT32_MAX,
            "finite in float32, |beta| <= 3.4e38 (the actor update holds it as a float32; inf would drop the "
            "behaviour regulariser)",
        ),
    )
    t_min: float = hyperparameter("t_min", 0.02, "the diffusion times the regulariser reads: t ~ U[t_min, t_max]")
    t_max: float = hyperparameter("t_max", 0.98, "the upper end of t_min's range")
    score_weight: str = hyperparameter(
        "score_weight",
        "sigma_squared",
        "w(t): sigma_squared (SRPO) or one (mode-seeking)",
        (lambda v: v in SCORE_WEIGHTS, "one of " + ", ".join(SCORE_WEIGHTS)),
    )
    subtract_noise: bool = hyperparameter("subtract_noise", True, "e_i - z_i (the paper) instead of e_i (SRPO's code)")

    def relation_problems(self) -> List[str]:
        if not 0.0 < self.t_min < self.t_max <= 1.0:
            return [f"need 0 < t_min < t_max <= 1 (got t_min={self.t_min}, t_max={self.t_max})"]
        return []

    @property
    def weight_power(self) -> float:
        """The regulariser's weight ``w(t) = sigma_t ** power``."""
        from og_marl_omsd.models.losses import SCORE_WEIGHT_POWERS

        return SCORE_WEIGHT_POWERS[self.score_weight]


@dataclasses.dataclass(frozen=True)
class ScoreRegularisedActorConfig(ActorConfig, RegulariserConfig):
    """Stage 2 of the score-regularised systems: the regulariser's settings, then the actors'."""


@dataclasses.dataclass(frozen=True)
class CriticConfig(StageConfig):
    """Stage 1a: the IQL critic (expectile value, twin Q, Polyak targets; Adam)."""

    kind: str = "joint"  # "joint" Q(s, a) or "independent" Q^i(s, a_i): the system's
    steps: int = hyperparameter("critic_steps", 100_000, "the IQL critic's budget (SRPO: 1.5M)", *STEPS)
    hidden_sizes: Tuple[int, ...] = hyperparameter("critic_hidden_sizes", (256, 256), "Q and V hidden layers", SIZES)
    learning_rate: float = hyperparameter("critic_learning_rate", 3e-4, "Adam", FLOAT32_RATE)
    discount: float = hyperparameter("discount", 0.99, "gamma", (lambda v: 0 <= v <= 1, "in [0, 1]"))
    expectile: float = hyperparameter("expectile", 0.7, "V's expectile", (lambda v: 0 < v < 1, "in (0, 1)"))
    target_update_rate: float = hyperparameter(
        "target_update_rate",
        0.005,
        "Polyak rate of the target Qs",
        (lambda v: _is_number(v) and 0 < v <= 1, "in (0, 1]"),
    )
    reward_scale: float = 1.0  # the runner's (task.reward_normalisation)
    seed: int = 0  # the run's
    layout: str = LAYOUT

    @property
    def label(self) -> str:
        return self.kind

    def cache_dict(self) -> Dict[str, Any]:
        """What the stage's cache key and its cache entry record."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BehaviourConfig(StageConfig):
    """Stage 1b: the behaviour diffusion model (AdamW)."""

    factorisation: str = "sequential"  # "joint", "independent" or "sequential": the system's
    steps: int = hyperparameter("behaviour_steps", 100_000, "the behaviour diffusion model's budget", *STEPS)
    learning_rate: float = hyperparameter("behaviour_learning_rate", 3e-4, "AdamW", FLOAT32_RATE)
    weight_decay: float = hyperparameter(
        "behaviour_weight_decay",
        0.01,
        "AdamW's decoupled decay",
        (lambda v: _is_number(v) and 0 <= v <= FLOAT32_MAX, "a number in [0, 3.4e38] (float32)"),
    )
    width: int = hyperparameter("diffusion_width", 256, "the ScoreNet's width", WIDTH)
    hidden: int = hyperparameter("diffusion_hidden", 1024, "the residual blocks' hidden width", WIDTH)
    num_blocks: int = hyperparameter(
        "diffusion_blocks", 3, "residual blocks", (lambda v: _whole(v) and v >= 0, "a whole number >= 0")
    )
    time_dim: int = hyperparameter("diffusion_time_dim", 128, "Fourier time features", WIDTH)
    dropout: float = hyperparameter(
        "diffusion_dropout", 0.1, "dropout while it trains", (lambda v: _is_number(v) and 0 <= v < 1, "in [0, 1)")
    )
    shared: bool = hyperparameter(
        "shared_behaviour_model", False, "one network for all agents (agent one-hot, masked prefix)"
    )
    agent_order: Optional[List[int]] = hyperparameter(
        "agent_order",
        None,
        "the sequential score's order (OMSD); null = the environment's order",
        (_permutation, "null or a permutation of 0..N-1, each agent once (e.g. [1,0])"),
    )
    seed: int = hyperparameter(  # null resolves to the run's seed (stage_configs)
        "behaviour_seed",
        None,
        "seeds the behaviour models alone (initialisation, noise, dropout, batches); null = the run's seed",
        (
            lambda v: v is None or (_whole(v) and SEED_RANGE[0] <= v <= SEED_RANGE[1]),
            f"null (the run's seed) or a whole number in [0, {SEED_RANGE[1]}]",
        ),
    )
    condition: str = hyperparameter(
        "behaviour_condition",
        "state",
        "what the behaviour models read: the state s, or each agent's observation o_i (the authors' code)",
        (lambda v: v in BEHAVIOUR_CONDITIONS, "one of " + ", ".join(BEHAVIOUR_CONDITIONS)),
    )
    layout: str = LAYOUT

    @property
    def label(self) -> str:
        return self.factorisation

    def cache_dict(self) -> Dict[str, Any]:
        """What the stage's cache key and its cache entry record (``condition`` only when it is not
        the state, so that the keys made before it existed still name the same models)."""
        values = dataclasses.asdict(self)
        if values["condition"] == "state":
            del values["condition"]
        return values


@dataclasses.dataclass(frozen=True)
class ExecutionConfig(StageConfig):
    """How every stage runs: compilation, steps per compiled call, logging."""

    jit_compile: bool = hyperparameter("jit_compile", True, "XLA-compile the training steps")
    pretrain_log_every: int = hyperparameter(
        "pretrain_log_every", 1000, "pretraining log period in steps", WIDTH, pretraining_only=True
    )
    steps_per_call: int = hyperparameter(
        "steps_per_call",
        50,
        "training steps per compiled call (logging, checkpoints, evaluation at its ends; results do not depend on it)",
        (lambda v: _whole(v) and 1 <= v <= 2**31 - 1, "a whole number in [1, 2**31 - 1]"),
    )


# The configs of each kind of system, in the order of its constructor's keywords and its hydra node.
ACTOR_CONFIGS: Tuple[Type[StageConfig], ...] = (ActorConfig, ExecutionConfig)
SCORE_REGULARISED_CONFIGS: Tuple[Type[StageConfig], ...] = (
    ScoreRegularisedActorConfig,
    CriticConfig,
    BehaviourConfig,
    ExecutionConfig,
)


def hyperparameter_table(config_types: Sequence[Type[StageConfig]]) -> Tuple[Hyperparameter, ...]:
    """The hyperparameters of a system with ``config_types``, in order (``pretraining_only``
    ones only when it has a pretraining stage)."""
    pretrains = any(issubclass(t, (CriticConfig, BehaviourConfig)) for t in config_types)
    return tuple(
        hp for config in config_types for hp in config.hyperparameters() if pretrains or not hp.pretraining_only
    )


def constructor_signature(table: Sequence[Hyperparameter]) -> inspect.Signature:
    """``(self, environment, logger, <each hyperparameter>=<default>, reward_scale=1.0, seed=0)``."""
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    names = ["self", "environment", "logger"]
    return inspect.Signature(
        [inspect.Parameter(name, keyword) for name in names]
        + [inspect.Parameter(hp.name, keyword, default=hp.default) for hp in table]
        + [inspect.Parameter(name, keyword, default=value) for name, value in RUNNER_SET.items()]
    )


def stage_configs(
    values: Mapping[str, Any], critic_kind: str, factorisation: str
) -> Tuple[ScoreRegularisedActorConfig, CriticConfig, BehaviourConfig]:
    """The stage configs of a score-regularised system from its flat hyperparameters ``values``."""
    seed = int(values.get("seed", RUNNER_SET["seed"]))
    critic = CriticConfig.from_values(
        values, kind=critic_kind, reward_scale=float(values.get("reward_scale", RUNNER_SET["reward_scale"])), seed=seed
    )
    behaviour = BehaviourConfig.from_values(values, factorisation=factorisation)
    order = behaviour.agent_order
    behaviour = dataclasses.replace(
        behaviour,
        # the order only matters for the sequential score
        agent_order=None if order is None or factorisation != "sequential" else [int(i) for i in order],
        seed=seed if behaviour.seed is None else int(behaviour.seed),
    )
    return ScoreRegularisedActorConfig.from_values(values), critic, behaviour


def config_problems(*configs: StageConfig) -> List[str]:
    """Every config's problems, in order."""
    return [problem for config in configs for problem in config.problems()]


def hyperparameter_problems(values: Mapping[str, Any], config_types: Sequence[Type[StageConfig]]) -> List[str]:
    """Every problem of the flat hyperparameters ``values`` of a system with ``config_types``:
    each setting's rules (declaration order), then the relations between settings when the
    values make configs at all."""
    problems = rule_problems_of(hyperparameter_table(config_types), values)
    try:
        configs = [config.from_values(values) for config in config_types]
    except (TypeError, ValueError):  # a value of the wrong kind: its rule names it
        return problems
    return problems + [problem for config in configs for problem in config.relation_problems()]


def _chain_parameters(sizes: List[int], heads: int = 1) -> int:
    """Weights and biases between consecutive layers of ``sizes`` (input width left out), ``heads`` copies."""
    return heads * sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def training_memory_lower_bound(values: Mapping[str, Any], batch_size: int) -> Dict[str, int]:
    """Bytes the networks of ``values`` (flat hyperparameters, defaults filled in) need at least
    while training with batches of ``batch_size``, per part (``critic``, ``behaviour``, ``actors``).

    A lower bound: one agent, input widths left out, float32; each trained weight is held with
    its gradient and Adam's two moments (4 copies), a target copy once, and each layer's
    activations for the batch twice (forward and backward). A setting whose lower bound exceeds
    the machine's memory cannot run, whatever the task.
    """
    floats = 4
    parts: Dict[str, int] = {}
    if int(values.get("critic_steps", 0) or 0) > 0:
        hidden = [int(h) for h in values.get("critic_hidden_sizes", [])]
        chain = [*hidden, 1]
        trained = _chain_parameters(chain, heads=3)  # twin Q and V
        target = _chain_parameters(chain, heads=2)
        activations = 3 * batch_size * sum(hidden) * 2
        parts["critic"] = floats * (4 * trained + target + activations)
    if int(values.get("behaviour_steps", 0) or 0) > 0:
        width, inner = int(values.get("diffusion_width", 1)), int(values.get("diffusion_hidden", 1))
        blocks = int(values.get("diffusion_blocks", 0))
        trained = blocks * (width * inner + inner + inner * width + width + 2 * width)
        activations = batch_size * (width + blocks * (inner + 2 * width)) * 2
        parts["behaviour"] = floats * (4 * trained + activations)
    actor_hidden = [int(h) for h in values.get("actor_hidden_sizes", [])]
    if actor_hidden:
        parts["actors"] = floats * (4 * _chain_parameters(actor_hidden) + batch_size * sum(actor_hidden) * 2)
    return parts
