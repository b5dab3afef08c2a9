"""Each system's composed config is pinned: ``cfg.system`` and the default run directory (a
hash of the resolved config) of every plugin system with each environment preset, recorded
when the hyperparameter defaults moved from YAML into ``og_marl_omsd/systems/defaults.py``.
Existing run directories and pretrained caches are found only while these stay the same."""

import json

import pytest
from omegaconf import OmegaConf

from og_marl_omsd.runner.run import default_run_dir
from og_marl_omsd.systems.defaults import ADDED_AFTER_PIN, DEFAULTS

from conftest import run_config

SYSTEM_CONFIGS = {
    "omsd/bandit": {
        "beta": 0.5,
        "t_min": 0.02,
        "t_max": 0.1,
        "score_weight": "one",
        "subtract_noise": True,
        "actor_hidden_sizes": [64, 64],
        "actor_learning_rate": 0.001,
        "shared_actor": False,
        "critic_steps": 2000,
        "critic_hidden_sizes": [64, 64],
        "critic_learning_rate": 0.0003,
        "discount": 0.99,
        "expectile": 0.7,
        "target_update_rate": 0.005,
        "behaviour_steps": 3000,
        "behaviour_learning_rate": 0.0003,
        "behaviour_weight_decay": 0.01,
        "diffusion_width": 64,
        "diffusion_hidden": 256,
        "diffusion_blocks": 2,
        "diffusion_time_dim": 64,
        "diffusion_dropout": 0.1,
        "shared_behaviour_model": False,
        "agent_order": None,
        "jit_compile": True,
        "pretrain_log_every": 1000,
        "steps_per_call": 50,
        "name": "omsd",
    },
    "omsd/mamujoco": {
        "beta": 0.1,
        "t_min": 0.02,
        "t_max": 0.98,
        "score_weight": "sigma_squared",
        "subtract_noise": True,
        "actor_hidden_sizes": [256, 256],
        "actor_learning_rate": 0.0003,
        "shared_actor": False,
        "critic_steps": 20000,
        "critic_hidden_sizes": [256, 256],
        "critic_learning_rate": 0.0003,
        "discount": 0.99,
        "expectile": 0.7,
        "target_update_rate": 0.005,
        "behaviour_steps": 20000,
        "behaviour_learning_rate": 0.0003,
        "behaviour_weight_decay": 0.01,
        "diffusion_width": 128,
        "diffusion_hidden": 512,
        "diffusion_blocks": 2,
        "diffusion_time_dim": 128,
        "diffusion_dropout": 0.1,
        "shared_behaviour_model": False,
        "agent_order": None,
        "jit_compile": True,
        "pretrain_log_every": 1000,
        "steps_per_call": 50,
        "name": "omsd",
    },
    "brpo_fac/bandit": {
        "beta": 0.5,
        "t_min": 0.02,
        "t_max": 0.1,
        "score_weight": "one",
        "subtract_noise": True,
        "actor_hidden_sizes": [64, 64],
        "actor_learning_rate": 0.001,
        "shared_actor": False,
        "critic_steps": 2000,
        "critic_hidden_sizes": [64, 64],
        "critic_learning_rate": 0.0003,
        "discount": 0.99,
        "expectile": 0.7,
        "target_update_rate": 0.005,
        "behaviour_steps": 3000,
        "behaviour_learning_rate": 0.0003,
        "behaviour_weight_decay": 0.01,
        "diffusion_width": 64,
        "diffusion_hidden": 256,
        "diffusion_blocks": 2,
        "diffusion_time_dim": 64,
        "diffusion_dropout": 0.1,
        "shared_behaviour_model": False,
        "agent_order": None,
        "jit_compile": True,
        "pretrain_log_every": 1000,
        "steps_per_call": 50,
        "name": "brpo_fac",
    },
    "brpo_fac/mamujoco": {
        "beta": 0.1,
        "t_min": 0.02,
        "t_max": 0.98,
        "score_weight": "sigma_squared",
        "subtract_noise": True,
        "actor_hidden_sizes": [256, 256],
        "actor_learning_rate": 0.0003,
        "shared_actor": False,
        "critic_steps": 20000,
        "critic_hidden_sizes": [256, 256],
        "critic_learning_rate": 0.0003,
        "discount": 0.99,
        "expectile": 0.7,
        "target_update_rate": 0.005,
        "behaviour_steps": 20000,
        "behaviour_learning_rate": 0.0003,
        "behaviour_weight_decay": 0.01,
        "diffusion_width": 128,
        "diffusion_hidden": 512,
        "diffusion_blocks": 2,
        "diffusion_time_dim": 128,
        "diffusion_dropout": 0.1,
        "shared_behaviour_model": False,
        "agent_order": None,
        "jit_compile": True,
        "pretrain_log_every": 1000,
        "steps_per_call": 50,
        "name": "brpo_fac",
    },
    "brpo_ind/bandit": {
        "beta": 0.5,
        "t_min": 0.02,
        "t_max": 0.1,
        "score_weight": "one",
        "subtract_noise": True,
        "actor_hidden_sizes": [64, 64],
        "actor_learning_rate": 0.001,
        "shared_actor": False,
        "critic_steps": 2000,
        "critic_hidden_sizes": [64, 64],
        "critic_learning_rate": 0.0003,
        "discount": 0.99,
        "expectile": 0.7,
        "target_update_rate": 0.005,
        "behaviour_steps": 3000,
        "behaviour_learning_rate": 0.0003,
        "behaviour_weight_decay": 0.01,
        "diffusion_width": 64,
        "diffusion_hidden": 256,
        "diffusion_blocks": 2,
        "diffusion_time_dim": 64,
        "diffusion_dropout": 0.1,
        "shared_behaviour_model": False,
        "agent_order": None,
        "jit_compile": True,
        "pretrain_log_every": 1000,
        "steps_per_call": 50,
        "name": "brpo_ind",
    },
    "brpo_ind/mamujoco": {
        "beta": 0.1,
        "t_min": 0.02,
        "t_max": 0.98,
        "score_weight": "sigma_squared",
        "subtract_noise": True,
        "actor_hidden_sizes": [256, 256],
        "actor_learning_rate": 0.0003,
        "shared_actor": False,
        "critic_steps": 20000,
        "critic_hidden_sizes": [256, 256],
        "critic_learning_rate": 0.0003,
        "discount": 0.99,
        "expectile": 0.7,
        "target_update_rate": 0.005,
        "behaviour_steps": 20000,
        "behaviour_learning_rate": 0.0003,
        "behaviour_weight_decay": 0.01,
        "diffusion_width": 128,
        "diffusion_hidden": 512,
        "diffusion_blocks": 2,
        "diffusion_time_dim": 128,
        "diffusion_dropout": 0.1,
        "shared_behaviour_model": False,
        "agent_order": None,
        "jit_compile": True,
        "pretrain_log_every": 1000,
        "steps_per_call": 50,
        "name": "brpo_ind",
    },
    "brpo_jal/bandit": {
        "beta": 0.5,
        "t_min": 0.02,
        "t_max": 0.1,
        "score_weight": "one",
        "subtract_noise": True,
        "actor_hidden_sizes": [64, 64],
        "actor_learning_rate": 0.001,
        "shared_actor": False,
        "critic_steps": 2000,
        "critic_hidden_sizes": [64, 64],
        "critic_learning_rate": 0.0003,
        "discount": 0.99,
        "expectile": 0.7,
        "target_update_rate": 0.005,
        "behaviour_steps": 3000,
        "behaviour_learning_rate": 0.0003,
        "behaviour_weight_decay": 0.01,
        "diffusion_width": 64,
        "diffusion_hidden": 256,
        "diffusion_blocks": 2,
        "diffusion_time_dim": 64,
        "diffusion_dropout": 0.1,
        "shared_behaviour_model": False,
        "agent_order": None,
        "jit_compile": True,
        "pretrain_log_every": 1000,
        "steps_per_call": 50,
        "name": "brpo_jal",
    },
    "brpo_jal/mamujoco": {
        "beta": 0.1,
        "t_min": 0.02,
        "t_max": 0.98,
        "score_weight": "sigma_squared",
        "subtract_noise": True,
        "actor_hidden_sizes": [256, 256],
        "actor_learning_rate": 0.0003,
        "shared_actor": False,
        "critic_steps": 20000,
        "critic_hidden_sizes": [256, 256],
        "critic_learning_rate": 0.0003,
        "discount": 0.99,
        "expectile": 0.7,
        "target_update_rate": 0.005,
        "behaviour_steps": 20000,
        "behaviour_learning_rate": 0.0003,
        "behaviour_weight_decay": 0.01,
        "diffusion_width": 128,
        "diffusion_hidden": 512,
        "diffusion_blocks": 2,
        "diffusion_time_dim": 128,
        "diffusion_dropout": 0.1,
        "shared_behaviour_model": False,
        "agent_order": None,
        "jit_compile": True,
        "pretrain_log_every": 1000,
        "steps_per_call": 50,
        "name": "brpo_jal",
    },
    "bc/bandit": {
        "name": "bc",
        "actor_hidden_sizes": [64, 64],
        "actor_learning_rate": 0.001,
        "shared_actor": False,
        "jit_compile": True,
        "steps_per_call": 50,
        "beta": 0.5,
        "t_max": 0.1,
        "score_weight": "one",
        "critic_steps": 2000,
        "critic_hidden_sizes": [64, 64],
        "behaviour_steps": 3000,
        "diffusion_width": 64,
        "diffusion_hidden": 256,
        "diffusion_blocks": 2,
        "diffusion_time_dim": 64,
        "pretrain_log_every": 1000,
    },
    "bc/mamujoco": {
        "name": "bc",
        "actor_hidden_sizes": [256, 256],
        "actor_learning_rate": 0.0003,
        "shared_actor": False,
        "jit_compile": True,
        "steps_per_call": 50,
        "beta": 0.1,
        "critic_steps": 20000,
        "behaviour_steps": 20000,
        "diffusion_width": 128,
        "diffusion_hidden": 512,
        "diffusion_blocks": 2,
    },
}

RUN_DIRS = {
    "omsd/bandit": "runs/omsd/bandit-bandit/D/seed0-757f1b6e",
    "omsd/mamujoco": "runs/omsd/mamujoco-2halfcheetah/D/seed0-1c8025a1",
    "brpo_fac/bandit": "runs/brpo_fac/bandit-bandit/D/seed0-6f48031c",
    "brpo_fac/mamujoco": "runs/brpo_fac/mamujoco-2halfcheetah/D/seed0-6880dfc3",
    "brpo_ind/bandit": "runs/brpo_ind/bandit-bandit/D/seed0-e529f79a",
    "brpo_ind/mamujoco": "runs/brpo_ind/mamujoco-2halfcheetah/D/seed0-8bddb3a4",
    "brpo_jal/bandit": "runs/brpo_jal/bandit-bandit/D/seed0-1de836e0",
    "brpo_jal/mamujoco": "runs/brpo_jal/mamujoco-2halfcheetah/D/seed0-003104ee",
    "bc/bandit": "runs/bc/bandit-bandit/D/seed0-468160ae",
    "bc/mamujoco": "runs/bc/mamujoco-2halfcheetah/D/seed0-76cf7f3a",
}


@pytest.mark.parametrize("case", sorted(SYSTEM_CONFIGS))
def test_composed_system_config_and_run_dir_are_unchanged(case):
    system, env = case.split("/")
    cfg = run_config(f"system={system}", f"env={env}")
    composed = OmegaConf.to_container(cfg.system, resolve=True)
    # Hyperparameters added since the pin are there at their default, which leaves the run as it was.
    later = {name: composed.pop(name) for name in ADDED_AFTER_PIN if name in composed}
    assert later == {name: DEFAULTS.to_config()[name] for name in later}
    assert set(later) == (set() if system == "bc" else set(ADDED_AFTER_PIN))
    assert composed == SYSTEM_CONFIGS[case]
    assert list(composed) == list(SYSTEM_CONFIGS[case])  # the same order (config.yaml of a run)
    assert json.dumps(composed) == json.dumps(SYSTEM_CONFIGS[case])  # and types (3e-4 stays a float, 50 an int)
    assert default_run_dir(cfg, "D") == RUN_DIRS[case]


def test_hyperparameters_added_after_the_pin_enter_the_run_identity_only_when_set():
    """A later hyperparameter at its default keeps the pinned run directory; set, it gets its own."""
    pinned = default_run_dir(run_config("system=brpo_fac", "env=bandit"), "D")
    assert pinned == RUN_DIRS["brpo_fac/bandit"]
    assert default_run_dir(run_config("system=brpo_fac", "env=bandit", "system.behaviour_seed=7"), "D") != pinned


def test_og_marl_runner_composes_the_plugin_systems_with_the_same_defaults(tmp_path):
    """OG-MARL's runner (an app whose configs are og_marl/configs) sees system=omsd through the
    search-path plugin, which also registers the generated defaults node: in a fresh process
    (nothing of og_marl_omsd.runner.run imported) the system config is the constructor defaults."""
    import subprocess
    import sys

    from og_marl_omsd.systems.defaults import DEFAULTS

    config_dir = tmp_path / "og_marl" / "configs"
    config_dir.mkdir(parents=True)
    (config_dir / "config.yaml").write_text("defaults:\n  - system: omsd\n  - _self_\n")
    script = (
        "import json, sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from omegaconf import OmegaConf\n"
        "with initialize_config_dir(config_dir=sys.argv[1], version_base=None):\n"
        "    cfg = compose(config_name='config', overrides=['system=brpo_jal'])\n"
        "print(json.dumps(OmegaConf.to_container(cfg.system)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(config_dir)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {**DEFAULTS.to_config(), "name": "brpo_jal"}
