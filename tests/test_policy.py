"""runner/policy.py: the exported SavedModel policy and the NumPy actors evaluations act through."""

import numpy as np
import pytest
import tensorflow as tf

from og_marl_omsd.runner.registry import load_system


class _StubEnvironment:
    """The shapes a system reads from an environment: 3 agents, 5 observations, 2 actions."""

    agents = ["agent_0", "agent_1", "agent_2"]
    num_actions = 2
    observation_shape = (5,)
    state_shape = (7,)


@pytest.mark.slow
@pytest.mark.parametrize("name, options", [("omsd", {}), ("omsd", {"shared_actor": True}), ("brpo_jal", {})])
def test_saved_model_gives_the_actors_actions(name, options, tmp_path):
    from og_marl_omsd.runner.policy import NumpyActors, export_system, load_policy

    system = load_system(name)(
        _StubEnvironment(),
        None,
        seed=3,
        actor_hidden_sizes=(8,),
        jit_compile=False,
        critic_hidden_sizes=(8,),
        diffusion_width=8,
        diffusion_hidden=8,
        diffusion_blocks=1,
        diffusion_time_dim=8,
        **options,
    )
    export_system(system, str(tmp_path))
    observations = np.random.default_rng(0).normal(size=(4, 3, 5)).astype("float32")
    expected = system.actors(tf.constant(observations)).numpy()

    loaded = tf.saved_model.load(str(tmp_path / "policy"))  # plain TF, no plugin code needed
    np.testing.assert_allclose(loaded(tf.constant(observations)).numpy(), expected, rtol=1e-6, atol=1e-6)
    served = loaded.signatures["serving_default"](observations=tf.constant(observations))["actions"]
    np.testing.assert_allclose(served.numpy(), expected, rtol=1e-6, atol=1e-6)
    # The run's evaluations act through NumpyActors: the TF actors' maths to float32 rounding ...
    acting = NumpyActors.of(system.actors)
    assert acting.kind == {"omsd": "shared" if options else "per_agent", "brpo_jal": "centralised"}[name]
    np.testing.assert_allclose(acting(observations), expected, rtol=1e-5, atol=1e-6)
    policy = load_policy(str(tmp_path))
    assert policy.info["acting"] == "numpy" and policy.numpy_actors is not None
    # ... and the loaded policy acts with the same weights and code: bit for bit (evaluate reproduces runs).
    np.testing.assert_array_equal(policy.actions(observations), acting(observations))
    actions = policy.select_actions({agent: observations[0, i] for i, agent in enumerate(_StubEnvironment.agents)})
    np.testing.assert_allclose(np.stack([actions[a] for a in _StubEnvironment.agents]), expected[0], atol=1e-6)
    assert policy.info["agents"] == _StubEnvironment.agents and policy.info["action_dim"] == 2
