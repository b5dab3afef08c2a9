"""models/diffusion.py and models/networks.py: behaviour diffusion (sequential DDIM sampling in agent order),
critics and actors: shapes, structure, and learned scores vs closed forms."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

from og_marl_omsd.environments.bandit import generate_bandit_experience
from og_marl_omsd.models.diffusion import BehaviourDiffusion
from og_marl_omsd.models.losses import vp_schedule
from og_marl_omsd.models.networks import DeterministicActors, IQLCritic

MEAN, VAR = 0.8, 0.09
SMALL = dict(width=64, hidden=256, num_blocks=2, time_dim=64)


def _gmm_score_1d(x, means, weights, var):
    """Exact score of a 1-D Gaussian mixture (numpy, written independently of the project)."""
    comps = np.stack([w * np.exp(-((x - m) ** 2) / (2 * var)) for m, w in zip(means, weights)])
    return (comps * np.stack([-(x - m) / var for m in means])).sum(0) / comps.sum(0)


def _gmm_score_joint(x, alpha, var):
    centre = alpha * MEAN
    c_pos = np.exp(-((x - centre) ** 2).sum(-1) / (2 * var))
    c_neg = np.exp(-((x + centre) ** 2).sum(-1) / (2 * var))
    return (c_pos[:, None] * -(x - centre) + c_neg[:, None] * -(x + centre)) / var / (c_pos + c_neg)[:, None]


@pytest.fixture(scope="module")
def trained_models():
    """Joint, independent and sequential models trained on the bandit's behaviour data."""
    data = generate_bandit_experience(200_000, seed=1)["actions"]  # (T, 2, 1), clipped mixture
    state = tf.ones([512, 1])
    models = {}
    for factorisation in ("joint", "independent", "sequential"):
        tf.random.set_seed(0)
        model = BehaviourDiffusion(factorisation, 2, 1, dropout=0.0, **SMALL)
        optimizer = snt.optimizers.Adam(1e-3)
        rng = tf.random.Generator.from_seed(0)
        index = np.random.default_rng(0)

        @tf.function
        def step(actions, model=model, optimizer=optimizer, rng=rng):
            with tf.GradientTape() as tape:
                loss = model.loss(actions, state, rng)
            optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            return loss

        for _ in range(2500):
            step(tf.constant(data[index.integers(0, len(data), 512)]))
        models[factorisation] = model
    return models


def _predicted_score(model, x, t, clean=None):
    n = x.shape[0]
    t_batch = tf.fill([n], float(t))
    clean = x if clean is None else clean
    return model.score(
        tf.constant(x[..., None], tf.float32), t_batch, tf.ones([n, 1]), tf.constant(clean[..., None], tf.float32)
    ).numpy()[..., 0]


@pytest.mark.slow
@pytest.mark.parametrize("t", [0.2, 0.4, 0.7])
def test_learned_joint_and_marginal_scores_match_noised_mixture(trained_models, t):
    alpha, sigma = (float(v.numpy()[0]) for v in vp_schedule(tf.constant([t])))
    var = alpha**2 * VAR + sigma**2
    grid = np.stack(np.meshgrid(np.linspace(-0.8, 0.8, 9), np.linspace(-0.8, 0.8, 9)), -1).reshape(-1, 2)
    # Compare in noise units (eps = -sigma * score), the quantity the networks predict.
    exact_joint = -sigma * _gmm_score_joint(grid, alpha, var)
    learned_joint = -sigma * _predicted_score(trained_models["joint"], grid, t)
    assert np.mean(np.abs(learned_joint - exact_joint)) < 0.15
    exact_marginal = -sigma * _gmm_score_1d(grid, [alpha * MEAN, -alpha * MEAN], [0.5, 0.5], var)
    learned_marginal = -sigma * _predicted_score(trained_models["independent"], grid, t)
    assert np.mean(np.abs(learned_marginal - exact_marginal)) < 0.15


@pytest.mark.slow
@pytest.mark.parametrize("t", [0.05, 0.1, 0.3])
def test_sequential_second_agent_follows_first_agents_mode(trained_models, t):
    alpha, sigma = (float(v.numpy()[0]) for v in vp_schedule(tf.constant([t])))
    var = alpha**2 * VAR + sigma**2
    x2 = np.linspace(-0.3, 0.3, 7)
    for a1, sign in ((0.8, 1.0), (-0.8, -1.0)):
        x = np.stack([np.full_like(x2, a1), x2], -1)
        learned = _predicted_score(trained_models["sequential"], x, t)[:, 1]
        assert np.all(sign * learned > 0), f"agent 2's score at a_1={a1} should point toward {sign * 0.8}"
        w_pos, w_neg = np.exp(-((a1 - MEAN) ** 2) / (2 * VAR)), np.exp(-((a1 + MEAN) ** 2) / (2 * VAR))
        exact = _gmm_score_1d(
            x2, [alpha * MEAN, -alpha * MEAN], [w_pos / (w_pos + w_neg), w_neg / (w_pos + w_neg)], var
        )
        assert np.mean(np.abs(sigma * (learned - exact))) < 0.2


@pytest.mark.slow
@pytest.mark.parametrize("t", [0.2, 0.3, 0.5])
def test_independent_second_agent_score_is_symmetric(trained_models, t):
    """The independent marginal of agent 2 is odd in x2 and ignores agent 1 (no pull at 0)."""
    _, sigma = (float(v.numpy()[0]) for v in vp_schedule(tf.constant([t])))
    x2 = np.linspace(-0.3, 0.3, 7)
    for a1 in (0.8, -0.8):
        x = np.stack([np.full_like(x2, a1), x2], -1)
        eps = sigma * _predicted_score(trained_models["independent"], x, t)[:, 1]
        np.testing.assert_allclose(eps, -eps[::-1], atol=0.15)
        assert abs(eps.mean()) < 0.1


@pytest.mark.parametrize("factorisation", ["independent", "sequential", "joint"])
@pytest.mark.parametrize("shared", [False, True])
def test_noise_prediction_shapes(factorisation, shared):
    model = BehaviourDiffusion(factorisation, 3, 2, shared=shared, **SMALL)
    actions = tf.random.normal([5, 3, 2])
    eps = model.noise_prediction(actions, tf.fill([5], 0.5), tf.random.normal([5, 4]), actions)
    assert eps.shape == (5, 3, 2)
    loss = model.loss(actions, tf.random.normal([5, 4]), tf.random.Generator.from_seed(0))
    assert loss.shape == () and np.isfinite(loss.numpy())


@pytest.mark.parametrize("shared", [False, True])
def test_sequential_prefix_is_causal_in_agent_order(shared):
    """Agent order [2, 0, 1]: agent 2 sees no prefix, agent 0 sees a_2, agent 1 sees a_2 and a_0."""
    tf.random.set_seed(1)
    model = BehaviourDiffusion("sequential", 3, 2, agent_order=[2, 0, 1], shared=shared, dropout=0.0, **SMALL)
    noisy, state, t = tf.random.normal([4, 3, 2]), tf.random.normal([4, 5]), tf.fill([4], 0.3)
    clean = tf.random.normal([4, 3, 2])
    base = model.noise_prediction(noisy, t, state, clean).numpy()

    def changed(agent):
        other = clean.numpy().copy()
        other[:, agent] += 1.0
        return np.abs(model.noise_prediction(noisy, t, state, tf.constant(other)).numpy() - base).max(axis=(0, 2))

    np.testing.assert_array_equal(changed(1) == 0, [True, True, True])  # last in order: nobody conditions on it
    assert changed(0)[2] == 0 and changed(0)[1] > 0 and changed(0)[0] == 0
    assert changed(2)[2] == 0 and changed(2)[0] > 0 and changed(2)[1] > 0


def test_independent_model_ignores_other_agents():
    model = BehaviourDiffusion("independent", 2, 1, dropout=0.0, **SMALL)
    noisy = tf.constant([[[0.1], [0.2]], [[0.1], [-0.9]]])
    eps = model.noise_prediction(noisy, tf.fill([2], 0.3), tf.ones([2, 1]), noisy).numpy()
    assert eps[0, 0, 0] == pytest.approx(eps[1, 0, 0])  # agent 0's eps unchanged when agent 1 moves


@pytest.mark.parametrize("factorisation", ["independent", "sequential", "joint"])
@pytest.mark.parametrize("shared", [False, True])
def test_observation_condition_is_read_per_agent(factorisation, shared):
    """A ``(B, N, O)`` condition: agent i's score reads its own row o_i only (and its prefix
    actions), the joint score reads every row; the input layer is as wide as O, not as the state."""
    tf.random.set_seed(2)
    model = BehaviourDiffusion(factorisation, 3, 2, shared=shared, dropout=0.0, **SMALL)
    noisy, t, observations = tf.random.normal([4, 3, 2]), tf.fill([4], 0.3), tf.random.normal([4, 3, 7])
    base = model.noise_prediction(noisy, t, observations, noisy).numpy()
    input_layer = [v for v in model.trainable_variables if "input" in v.name and v.name.endswith("w:0")][0]
    # shared: the agent one-hot (3), and for the sequential score the masked prefix (3 x 2) and its mask (3)
    extra = 3 + 3 * 2 + 3 if shared and factorisation == "sequential" else 3 if shared else 0
    prefix = 2 * 2 if factorisation == "sequential" and not shared else 0
    width = 3 * 2 + 3 * 7 if factorisation == "joint" else 2 + 7 + extra + prefix
    assert input_layer.shape[-2] == width + SMALL["time_dim"]

    def changed(agent):
        other = observations.numpy().copy()
        other[:, agent] += 1.0
        return np.abs(model.noise_prediction(noisy, t, tf.constant(other), noisy).numpy() - base).max(axis=(0, 2))

    for agent in range(3):
        moved = changed(agent) > 0
        expected_moved = [True] * 3 if factorisation == "joint" else [a == agent for a in range(3)]
        np.testing.assert_array_equal(moved, expected_moved)


def test_bad_module_arguments_are_rejected():
    with pytest.raises(ValueError, match="factorisation"):
        BehaviourDiffusion("autoregressive", 2, 1)
    with pytest.raises(ValueError, match="permutation"):
        BehaviourDiffusion("sequential", 3, 1, agent_order=[0, 0, 1])
    with pytest.raises(ValueError, match="critic kind"):
        IQLCritic("centralised", 2)
    with pytest.raises(ValueError, match="sequential factorisation needs clean_actions"):
        BehaviourDiffusion("sequential", 2, 1).noise_prediction(tf.zeros([1, 2, 1]), tf.ones([1]), tf.zeros([1, 1]))


def test_independent_critic_heads_depend_only_on_own_action():
    critic = IQLCritic("independent", 3, (32, 32))
    state, actions = tf.random.normal([6, 4]), tf.random.normal([6, 3, 2])
    with tf.GradientTape() as tape:
        tape.watch(actions)
        q1, q2 = critic.q_values(state, actions)
        head = tf.reduce_sum(q1[:, 1])
    gradient = tape.gradient(head, actions).numpy()
    assert q1.shape == (6, 3) and q2.shape == (6, 3) and critic.values(state).shape == (6, 3)
    assert np.all(gradient[:, [0, 2]] == 0) and np.any(gradient[:, 1] != 0)
    critic.q_values(state, actions, target=True)
    critic.initialise_targets()
    assert critic.action_gradient(state, actions).shape == (6, 3, 2)


def test_joint_critic_targets_track_online_by_polyak():
    critic = IQLCritic("joint", 2, (8,))
    state, actions = tf.zeros([1, 1]), tf.zeros([1, 2, 1])
    critic.q_values(state, actions)
    critic.q_values(state, actions, target=True)
    critic.initialise_targets()
    online, target = critic.q_variables[0], critic.target_variables[0]
    before = target.numpy().copy()
    online.assign_add(tf.ones_like(online))
    critic.update_targets(0.25)
    np.testing.assert_allclose(target.numpy(), before + 0.25, rtol=1e-6)


@pytest.mark.parametrize("shared,centralised", [(False, False), (True, False), (False, True)])
def test_actors_shapes_and_range(shared, centralised):
    actors = DeterministicActors(3, 2, (16,), shared=shared, centralised=centralised)
    actions = actors(tf.random.normal([7, 3, 5]) * 10)
    assert actions.shape == (7, 3, 2)
    assert np.all(np.abs(actions.numpy()) <= 1.0)


def test_decentralised_actor_uses_only_its_own_observation():
    actors = DeterministicActors(2, 1, (16,))
    obs = tf.random.normal([1, 2, 3])
    moved = tf.concat([obs[:, :1], obs[:, 1:] + 5.0], axis=1)
    assert actors(obs).numpy()[0, 0] == pytest.approx(actors(moved).numpy()[0, 0])


def test_modules_trace_under_tf_function():
    model = BehaviourDiffusion("sequential", 2, 3, shared=True, **SMALL)
    critic = IQLCritic("joint", 2, (16,))
    actors = DeterministicActors(2, 3, (16,))

    @tf.function
    def forward(obs, state):
        actions = actors(obs)
        eps = model.noise_prediction(actions, tf.fill([tf.shape(obs)[0]], 0.5), state, actions)
        q1, _ = critic.q_values(state, actions)
        return eps, q1

    eps, q1 = forward(tf.random.normal([4, 2, 6]), tf.random.normal([4, 5]))
    assert eps.shape == (4, 2, 3) and q1.shape == (4, 1)


@pytest.mark.slow
def test_sequential_ddim_sampling_follows_the_agent_order():
    """Agent order [1, 0]: agent 1 is sampled first, so agent 0's noise cannot change it;
    agent 1's noise changes agent 0's action through the prefix."""
    from og_marl_omsd.models.diffusion import BehaviourDiffusion

    tf.random.set_seed(2)
    model = BehaviourDiffusion(
        "sequential", 2, 2, agent_order=[1, 0], width=16, hidden=32, num_blocks=1, time_dim=16, dropout=0.0
    )
    state, noise = tf.random.normal([3, 4]), tf.random.normal([3, 2, 2])
    sample = tf.function(lambda s, z: model.sample(s, 4, z))
    base = sample(state, noise).numpy()
    assert base.shape == (3, 2, 2) and np.all(np.isfinite(base))
    moved_0 = sample(state, noise + tf.one_hot([0], 2)[:, :, None]).numpy()
    moved_1 = sample(state, noise + tf.one_hot([1], 2)[:, :, None]).numpy()
    np.testing.assert_array_equal(moved_0[:, 1], base[:, 1])
    assert np.abs(moved_0[:, 0] - base[:, 0]).max() > 0
    assert np.abs(moved_1[:, 0] - base[:, 0]).max() > 0 and np.abs(moved_1[:, 1] - base[:, 1]).max() > 0
