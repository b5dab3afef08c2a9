"""Each hyperparameter is declared once (systems/stage_configs.py); what is derived from the declarations."""

import dataclasses
import inspect

import pytest

from og_marl_omsd.systems.defaults import ACTORS_ONLY_DEFAULTS, DEFAULTS
from og_marl_omsd.systems.stage_configs import (
    ACTOR_CONFIGS,
    RUNNER_SET,
    SCORE_REGULARISED_CONFIGS,
    SCORE_WEIGHTS,
    BehaviourConfig,
    CriticConfig,
    ScoreRegularisedActorConfig,
    hyperparameter_problems,
    hyperparameter_table,
)


def test_every_hyperparameter_is_declared_once_with_a_doc_line():
    table = hyperparameter_table(SCORE_REGULARISED_CONFIGS)
    names = [hp.name for hp in table]
    assert len(names) == len(set(names)) == 29
    assert all(hp.doc for hp in table)
    assert list(DEFAULTS.to_config()) == names and DEFAULTS.beta == 0.1
    assert list(ACTORS_ONLY_DEFAULTS.to_config()) == [hp.name for hp in hyperparameter_table(ACTOR_CONFIGS)]
    assert "pretrain_log_every" in names and "pretrain_log_every" not in ACTORS_ONLY_DEFAULTS.to_config()


@pytest.mark.parametrize("system", ["omsd", "brpo_fac", "brpo_ind", "brpo_jal", "bc"])
def test_each_constructor_signature_is_its_table(system):
    from og_marl_omsd.runner.registry import load_system

    cls = load_system(system)
    parameters = inspect.signature(cls.__init__).parameters
    expected = {hp.name: hp.default for hp in hyperparameter_table(cls.config_types)} | RUNNER_SET
    assert {name: p.default for name, p in parameters.items() if name not in ("self", "environment", "logger")} == (
        expected
    )


def test_stage_configs_hold_the_declared_fields():
    actor = [f.name for f in dataclasses.fields(ScoreRegularisedActorConfig)]
    regulariser = ["beta", "t_min", "t_max", "score_weight", "subtract_noise"]
    assert actor == regulariser + ["hidden_sizes", "learning_rate", "shared"]  # the order of the hydra node
    assert {hp.key for hp in CriticConfig.hyperparameters()} < {f.name for f in dataclasses.fields(CriticConfig)}
    assert BehaviourConfig.from_values({"diffusion_blocks": 1.0}).num_blocks == 1  # the declared type


def test_score_weights_are_the_losses_weights():
    from og_marl_omsd.models.losses import SCORE_WEIGHT_POWERS

    assert SCORE_WEIGHTS == tuple(SCORE_WEIGHT_POWERS)


def test_each_rule_is_checked_once_and_relations_after_the_rules():
    values = DEFAULTS.to_config() | {"beta": 0.0, "t_min": 0.5, "t_max": 0.4, "discount": 2.0}
    problems = hyperparameter_problems(values, SCORE_REGULARISED_CONFIGS)
    assert [p.split(" ")[0] for p in problems] == ["beta", "discount", "need"]
    assert problems[0] == "beta must be > 0 (got 0.0)"
    assert hyperparameter_problems(DEFAULTS.to_config() | {"beta": float("inf")}, SCORE_REGULARISED_CONFIGS) == [
        "beta must be finite in float32, |beta| <= 3.4e38 (the actor update holds it as a float32; inf would drop "
        "the behaviour regulariser) (got inf)"
    ]
    assert hyperparameter_problems(DEFAULTS.to_config(), SCORE_REGULARISED_CONFIGS) == []
