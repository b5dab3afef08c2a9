"""The typed settings of the three stages of a score-regularised system (the critic, the
behaviour model, the actors), built from the system's flat keyword hyperparameters.

The flat constructor of :class:`~og_marl_omsd.systems.base.ScoreRegularisedSystem` (OG-MARL's
interface: ``cfg["system"]`` maps one-to-one onto it) declares each hyperparameter and its
default once; :func:`stage_configs` sorts them into these configs, each of which checks its
own values (``problems()``), and :data:`SYSTEM_RULES` holds each setting's own rule (type and
range); :func:`hyperparameter_problems` reports both, for the runner's check before a run.
A pretraining stage builds and trains from its config alone, and
:meth:`CriticConfig.cache_dict` / :meth:`BehaviourConfig.cache_dict` are what its cache key
hashes (:func:`~og_marl_omsd.systems.pretraining.stage_key`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from og_marl_omsd.models.losses import SCORE_WEIGHT_POWERS
from og_marl_omsd.upstream.og_marl_run import SEED_RANGE, _is_number, _whole, rule_problems

LAYOUT = "stacked"  # stacked per-head weights; batches drawn on the device (part of the cache key)
# What the behaviour models are conditioned on: the global state, or each agent's own observation.
BEHAVIOUR_CONDITIONS = ("state", "observation")


def _positive_sizes(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_whole(v) and v >= 1 for v in value)


def _permutation(value: Any) -> bool:
    return value is None or (
        isinstance(value, (list, tuple))
        and all(_whole(v) for v in value)
        and sorted(int(v) for v in value) == list(range(len(value)))
    )


FLOAT32_MAX = float(np.finfo(np.float32).max)  # hyperparameters held in float32 variables stay finite


def _float32_positive(value: Any) -> bool:
    return _is_number(value) and 0 < value <= FLOAT32_MAX


# A setting's rule: (test, what it must be). Checked before anything is built or written;
# every failing setting is listed in one message. Settings not present are not checked.
# (The run's own settings have theirs in og_marl_omsd.runner.validation.RUN_RULES.)
SYSTEM_RULES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "beta": (
        lambda v: not _is_number(v) or abs(v) <= FLOAT32_MAX,
        "finite in float32, |beta| <= 3.4e38 (the actor update holds it as a float32; inf would drop the "
        "behaviour regulariser)",
    ),
    "actor_learning_rate": (_float32_positive, "a number in (0, 3.4e38] (float32)"),
    "critic_learning_rate": (_float32_positive, "a number in (0, 3.4e38] (float32)"),
    "behaviour_learning_rate": (_float32_positive, "a number in (0, 3.4e38] (float32)"),
    "behaviour_weight_decay": (lambda v: _is_number(v) and 0 <= v <= FLOAT32_MAX, "a number in [0, 3.4e38] (float32)"),
    "critic_steps": (lambda v: not _whole(v) or v <= 2**63 - 1, "at most 2**63 - 1 (an int64 step counter)"),
    "behaviour_steps": (lambda v: not _whole(v) or v <= 2**63 - 1, "at most 2**63 - 1 (an int64 step counter)"),
    "steps_per_call": (lambda v: _whole(v) and 1 <= v <= 2**31 - 1, "a whole number in [1, 2**31 - 1]"),
    "target_update_rate": (lambda v: _is_number(v) and 0 < v <= 1, "in (0, 1]"),
    "diffusion_width": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "diffusion_hidden": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "diffusion_time_dim": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "diffusion_blocks": (lambda v: _whole(v) and v >= 0, "a whole number >= 0"),
    "diffusion_dropout": (lambda v: _is_number(v) and 0 <= v < 1, "in [0, 1)"),
    "critic_hidden_sizes": (_positive_sizes, "a non-empty list of whole numbers >= 1, e.g. [256,256]"),
    "actor_hidden_sizes": (_positive_sizes, "a non-empty list of whole numbers >= 1, e.g. [256,256]"),
    "agent_order": (_permutation, "null or a permutation of 0..N-1, each agent once (e.g. [1,0])"),
    "pretrain_log_every": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "behaviour_seed": (
        lambda v: v is None or (_whole(v) and SEED_RANGE[0] <= v <= SEED_RANGE[1]),
        f"null (the run's seed) or a whole number in [0, {SEED_RANGE[1]}]",
    ),
}


@dataclasses.dataclass(frozen=True)
class ActorConfig:
    """Stage 2: deterministic actors trained with the score-regularised update."""

    beta: float  # greediness (larger = weaker behaviour regularisation)
    t_min: float  # range of the diffusion times the regulariser reads
    t_max: float
    score_weight: str  # "sigma_squared" (SRPO) or "one" (mode-seeking)
    subtract_noise: bool  # e_i - z_i (paper) rather than e_i (SRPO code)
    hidden_sizes: Tuple[int, ...]
    learning_rate: float  # Adam, cosine decay to 0
    shared: bool

    def problems(self) -> List[str]:
        problems = []
        if not self.beta > 0:
            problems.append(f"beta must be > 0 (got {self.beta}); larger beta = greedier actors")
        if not 0.0 < self.t_min < self.t_max <= 1.0:
            problems.append(f"need 0 < t_min < t_max <= 1 (got t_min={self.t_min}, t_max={self.t_max})")
        if self.score_weight not in SCORE_WEIGHT_POWERS:
            problems.append(f"score_weight must be one of {', '.join(SCORE_WEIGHT_POWERS)} (got {self.score_weight!r})")
        return problems + rule_problems({"beta": self.beta}, SYSTEM_RULES)

    @property
    def weight_power(self) -> float:
        """The regulariser's weight ``w(t) = sigma_t ** power``."""
        return SCORE_WEIGHT_POWERS[self.score_weight]


@dataclasses.dataclass(frozen=True)
class CriticConfig:
    """Stage 1a: the IQL critic (expectile value, twin Q, Polyak targets; Adam)."""

    kind: str  # "joint" Q(s, a) or "independent" Q^i(s, a_i)
    steps: int
    hidden_sizes: List[int]
    learning_rate: float
    discount: float
    expectile: float
    target_update_rate: float
    reward_scale: float
    seed: int
    layout: str = LAYOUT

    @property
    def label(self) -> str:
        return self.kind

    def problems(self) -> List[str]:
        problems = []
        if not 0.0 < self.expectile < 1.0:
            problems.append(f"expectile must be in (0, 1) (got {self.expectile})")
        if not 0.0 <= self.discount <= 1.0:
            problems.append(f"discount must be in [0, 1] (got {self.discount})")
        if self.steps < 0:
            problems.append(f"critic_steps must be >= 0 (got {self.steps})")
        return problems

    def cache_dict(self) -> Dict[str, Any]:
        """What the stage's cache key and its cache entry record."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BehaviourConfig:
    """Stage 1b: the behaviour diffusion model (AdamW)."""

    factorisation: str  # "joint", "independent" or "sequential"
    steps: int
    learning_rate: float
    weight_decay: float
    width: int
    hidden: int
    num_blocks: int
    time_dim: int
    dropout: float
    shared: bool
    agent_order: Optional[List[int]]  # the sequential score's order (None for the others)
    seed: int  # the behaviour stage's seed: ``behaviour_seed``, or the run's seed when that is None
    condition: str = "state"  # "state" (s) or "observation" (each agent's o_i)
    layout: str = LAYOUT

    @property
    def label(self) -> str:
        return self.factorisation

    def problems(self) -> List[str]:
        problems = [] if self.steps >= 0 else [f"behaviour_steps must be >= 0 (got {self.steps})"]
        if self.condition not in BEHAVIOUR_CONDITIONS:
            problems.append(
                f"behaviour_condition must be one of {', '.join(BEHAVIOUR_CONDITIONS)} (got {self.condition!r})"
            )
        return problems

    def cache_dict(self) -> Dict[str, Any]:
        """What the stage's cache key and its cache entry record (``condition`` only when it is not
        the state, so that the keys made before it existed still name the same models)."""
        values = dataclasses.asdict(self)
        if values["condition"] == "state":
            del values["condition"]
        return values


def stage_configs(
    values: Mapping[str, Any], critic_kind: str, factorisation: str
) -> Tuple[ActorConfig, CriticConfig, BehaviourConfig]:
    """The three stage configs from the flat hyperparameters ``values`` (the constructor's keywords)."""
    seed = int(values["seed"])
    actor = ActorConfig(
        beta=values["beta"],
        t_min=values["t_min"],
        t_max=values["t_max"],
        score_weight=values["score_weight"],
        subtract_noise=bool(values["subtract_noise"]),
        hidden_sizes=tuple(values["actor_hidden_sizes"]),
        learning_rate=float(values["actor_learning_rate"]),
        shared=bool(values["shared_actor"]),
    )
    critic = CriticConfig(
        kind=critic_kind,
        steps=int(values["critic_steps"]),
        hidden_sizes=[int(h) for h in values["critic_hidden_sizes"]],
        learning_rate=float(values["critic_learning_rate"]),
        discount=float(values["discount"]),
        expectile=float(values["expectile"]),
        target_update_rate=float(values["target_update_rate"]),
        reward_scale=float(values["reward_scale"]),
        seed=seed,
    )
    order = values["agent_order"]
    behaviour = BehaviourConfig(
        factorisation=factorisation,
        steps=int(values["behaviour_steps"]),
        learning_rate=float(values["behaviour_learning_rate"]),
        weight_decay=float(values["behaviour_weight_decay"]),
        width=int(values["diffusion_width"]),
        hidden=int(values["diffusion_hidden"]),
        num_blocks=int(values["diffusion_blocks"]),
        time_dim=int(values["diffusion_time_dim"]),
        dropout=float(values["diffusion_dropout"]),
        shared=bool(values["shared_behaviour_model"]),
        # the order only matters for the sequential score
        agent_order=None if order is None or factorisation != "sequential" else [int(i) for i in order],
        seed=seed if values["behaviour_seed"] is None else int(values["behaviour_seed"]),
        condition=str(values["behaviour_condition"]),
    )
    return actor, critic, behaviour


def config_problems(actor: ActorConfig, critic: CriticConfig, behaviour: BehaviourConfig) -> List[str]:
    """Every stage's problems, actors first."""
    return actor.problems() + critic.problems() + behaviour.problems()


def hyperparameter_problems(values: Mapping[str, Any], critic_kind: str, factorisation: str) -> List[str]:
    """Every problem of the flat hyperparameters ``values`` (all of them given): the stage
    configs' own checks, then each setting's rule in :data:`SYSTEM_RULES`."""
    problems = rule_problems({name: value for name, value in values.items() if name != "beta"}, SYSTEM_RULES)
    try:
        configs = stage_configs(values, critic_kind, factorisation)
    except (TypeError, ValueError):  # a value of the wrong kind: its rule names it
        return rule_problems({"beta": values["beta"]}, SYSTEM_RULES) + problems
    return config_problems(*configs) + problems


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
