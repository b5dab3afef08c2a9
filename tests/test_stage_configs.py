"""The typed stage configs: the constructor's defaults are the config defaults, and the configs
check their own values."""

import inspect
import os

import pytest
import yaml

from og_marl_omsd.runner.registry import load_system
from og_marl_omsd.systems.stage_configs import config_problems, stage_configs

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "og_marl_omsd", "configs")


def constructor_defaults(system: str) -> dict:
    signature = inspect.signature(load_system(system).__init__).parameters
    return {name: p.default for name, p in signature.items() if p.default is not inspect.Parameter.empty}


def test_config_defaults_are_the_constructor_defaults():
    """The hydra node the system YAMLs build on is generated from the one declaration
    (systems/defaults.py) that the constructor's defaults come from, and no YAML repeats it."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    import og_marl_omsd.runner.run  # noqa: F401 (registers system_defaults/score_regularised)

    node = ConfigStore.instance().load("system_defaults/score_regularised.yaml").node
    defaults = OmegaConf.to_container(node)
    assert not os.path.exists(os.path.join(CONFIGS, "system_defaults"))
    for system in ("omsd", "brpo_fac", "brpo_ind", "brpo_jal"):
        with open(os.path.join(CONFIGS, "system", f"{system}.yaml")) as handle:
            assert set(yaml.safe_load(handle)) == {"defaults", "name"}
    expected = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in constructor_defaults("omsd").items()
        if name not in ("reward_scale", "seed")
    }
    assert defaults == expected


def test_stage_configs_sort_the_flat_hyperparameters_and_check_them():
    values = constructor_defaults("omsd") | {"critic_steps": 7, "diffusion_width": 12, "agent_order": (1, 0)}
    actor, critic, behaviour = stage_configs(values, "joint", "sequential")
    assert (critic.kind, critic.steps, behaviour.width, behaviour.agent_order) == ("joint", 7, 12, [1, 0])
    assert stage_configs(values, "joint", "independent")[2].agent_order is None  # only the sequential score has one
    assert config_problems(actor, critic, behaviour) == []
    bad = values | {"beta": 0.0, "t_min": 0.5, "t_max": 0.4, "expectile": 1.0, "behaviour_steps": -1}
    problems = config_problems(*stage_configs(bad, "joint", "sequential"))
    assert [problem.split(" ")[0] for problem in problems] == ["beta", "need", "expectile", "behaviour_steps"]


def test_check_parameters_lists_every_invalid_setting():
    with pytest.raises(ValueError, match=r"beta must be > 0.*diffusion_dropout must be in \[0, 1\)"):
        load_system("brpo_fac").check_parameters(beta=-1.0, diffusion_dropout=1.5)
    with pytest.raises(ValueError, match="critic_hidden_sizes must be a non-empty list"):
        load_system("omsd").check_parameters(critic_hidden_sizes="big")
    with pytest.raises(ValueError, match=r"behaviour_seed must be null \(the run's seed\) or a whole number"):
        load_system("brpo_fac").check_parameters(behaviour_seed=-1)
    load_system("brpo_fac").check_parameters(behaviour_seed=3)
