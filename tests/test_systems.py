"""The four systems: registry, what each changes, the actor update direction, sweep restarts."""

import os

import numpy as np
import pytest
import tensorflow as tf

from og_marl_omsd.environments.bandit import BanditEnvironment
from og_marl_omsd.environments.bandit_analysis import action_update_direction
from og_marl_omsd.host import FlashbaxReplayBuffer, TerminalLogger
from og_marl_omsd.models.losses import vp_schedule
from og_marl_omsd.runner.registry import UnknownSystemError, available_systems, load_system

SYSTEMS = {
    "omsd": ("joint", "sequential", False),
    "brpo_fac": ("joint", "independent", False),
    "brpo_ind": ("independent", "independent", False),
    "brpo_jal": ("joint", "joint", True),
}
TINY = dict(
    critic_steps=30,
    behaviour_steps=30,
    critic_hidden_sizes=(16,),
    actor_hidden_sizes=(16,),
    diffusion_width=16,
    diffusion_hidden=32,
    diffusion_blocks=1,
    diffusion_time_dim=16,
    pretrain_log_every=10**6,
    jit_compile=False,
)


class _Quiet(TerminalLogger):
    def write(self, logs, force=False):
        return


class _TrainLogs(TerminalLogger):
    """Keeps the training logs (one per compiled call of the actor stage)."""

    def __init__(self):
        self.calls = []

    def write(self, logs, force=False):
        if "training_steps" in logs:
            self.calls.append(logs)


def _train_actors(system, buffer, steps):
    """``steps`` actor steps through the runs' loop (no evaluation but the final one); their logs."""
    system.logger = logs = _TrainLogs()
    system.train(buffer, training_steps=steps, evaluation_every=None, num_eval_episodes=1)
    system.logger = _Quiet()
    return logs.calls


@pytest.fixture(scope="module")
def buffer(bandit_vault_dir):
    replay = FlashbaxReplayBuffer(sequence_length=2, batch_size=64, seed=0)
    replay.populate_from_vault("og_marl_omsd", "bandit", "2agent_gmm", "GMM", rel_dir=bandit_vault_dir)
    return replay


def test_registry_has_the_four_systems_as_entry_points():
    assert set(SYSTEMS) <= set(available_systems())
    for name, (critic, factorisation, centralised) in SYSTEMS.items():
        cls = load_system(name)
        assert (cls.critic_kind, cls.factorisation, cls.centralised_actor) == (critic, factorisation, centralised)


def test_unknown_system_lists_the_known_ones():
    with pytest.raises(UnknownSystemError, match="omsd.*brpo_jal|brpo_fac.*omsd"):
        load_system("omsd_v2")


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_each_system_pretrains_trains_and_acts(name, buffer):
    system = load_system(name)(BanditEnvironment(), _Quiet(), seed=1, **TINY)
    with pytest.raises(RuntimeError, match="pretrain"):
        system.train(buffer, training_steps=1)
    system.pretrain(buffer)
    assert system.critic.kind == SYSTEMS[name][0]
    assert system.behaviour_model.factorisation == SYSTEMS[name][1]
    (logs,) = _train_actors(system, buffer, 1)
    assert all(np.isfinite(v) for v in logs.values()) and "losses/actor_loss" in logs
    actions = system.select_actions({"agent_0": np.ones(1), "agent_1": np.ones(1)})
    assert set(actions) == {"agent_0", "agent_1"} and all(a.shape == (1,) for a in actions.values())
    assert "evaluation/coordination_rate" in system.evaluate(2)


def test_pretrained_parts_are_shared_through_the_cache(buffer, tmp_path):
    from og_marl_omsd.systems.pretraining import PretrainedCache

    cache = PretrainedCache(str(tmp_path))
    keys = {
        name: load_system(name)(BanditEnvironment(), _Quiet(), seed=2, **TINY).pretrain(buffer, cache, "data")
        for name in SYSTEMS
    }
    assert keys["omsd"]["critic"] == keys["brpo_fac"]["critic"] == keys["brpo_jal"]["critic"]
    assert keys["brpo_ind"]["behaviour"] == keys["brpo_fac"]["behaviour"]
    assert keys["brpo_ind"]["critic"] != keys["omsd"]["critic"]
    assert len({keys[n]["behaviour"] for n in ("omsd", "brpo_fac", "brpo_jal")}) == 3
    entries = [p for p in tmp_path.iterdir() if p.name != ".locks"]  # .locks: who trains which entry
    assert len(entries) == 5  # 2 critics + 3 behaviour models, nothing trained twice
    other = load_system("omsd")(BanditEnvironment(), _Quiet(), seed=2, **TINY).pretrain(buffer, cache, "other data")
    assert other["critic"] != keys["omsd"]["critic"]  # a changed dataset never gets a stale model


def test_cache_key_follows_every_stage_setting_and_the_data():
    from og_marl_omsd.datasets.vaults import fingerprint
    from og_marl_omsd.systems.pretraining import stage_key

    def keys(**overrides):
        system = load_system("omsd")(BanditEnvironment(), _Quiet(), seed=2, **{**TINY, **overrides})
        return stage_key(system.critic_config, "data"), stage_key(system.behaviour_config, "data")

    critic, behaviour = keys()
    assert keys() == (critic, behaviour)
    assert keys(expectile=0.8)[0] != critic and keys(expectile=0.8)[1] == behaviour
    assert keys(critic_learning_rate=1e-4)[0] != critic
    assert keys(diffusion_width=24)[1] != behaviour and keys(diffusion_width=24)[0] == critic
    assert keys(agent_order=[1, 0])[1] != behaviour
    assert keys(beta=3.0) == (critic, behaviour)  # actor-stage settings never invalidate pretraining
    data = {"actions": np.zeros((4, 2, 1), "float32"), "infos": {"state": np.ones((4, 1), "float32")}}
    changed = {"actions": data["actions"].copy(), "infos": data["infos"]}
    changed["actions"][3, 1, 0] = 1e-6  # one value of the dataset
    copied = {"actions": data["actions"].copy(), "infos": {"state": data["infos"]["state"].copy()}}  # new objects
    assert fingerprint(data) == fingerprint(copied)
    assert fingerprint(changed) != fingerprint(data)


def test_action_update_direction_equals_formula(buffer):
    system = load_system("omsd")(BanditEnvironment(), _Quiet(), seed=3, beta=0.7, **TINY)
    system.pretrain(buffer)
    actions = tf.constant([[[0.5], [-0.2]], [[-0.7], [0.9]]])
    state = tf.ones([2, 1])
    system._rng.reset_from_seed(11)
    direction = action_update_direction(system, state, actions, num_samples=4).numpy()
    # Recompute by hand with the same random stream.
    system._rng.reset_from_seed(11)
    repeated = tf.repeat(actions, 4, axis=0)
    t = system._rng.uniform([8], 0.02, 0.98)
    alpha, sigma = vp_schedule(t)
    noise = system._rng.normal([8, 2, 1])
    noisy = alpha[:, None, None] * repeated + sigma[:, None, None] * noise
    eps = system.behaviour_model.noise_prediction(noisy, t, tf.ones([8, 1]), repeated)
    score_term = ((sigma**2)[:, None, None] * (eps - noise)).numpy().reshape(2, 4, 2, 1).mean(1)
    with tf.GradientTape() as tape:
        tape.watch(actions)
        q1, q2 = system.critic.q_values(state, actions, target=True)
        q = tf.reduce_sum(0.5 * (q1 + q2))
    expected = -(score_term - 0.7 * tape.gradient(q, actions).numpy())
    np.testing.assert_allclose(direction, expected, rtol=1e-4, atol=1e-6)


def test_restart_actor_training_resets_actors_and_sets_hyperparameters(buffer):
    system = load_system("brpo_fac")(BanditEnvironment(), _Quiet(), seed=4, **TINY)
    system.pretrain(buffer)
    initial = [v.numpy().copy() for v in system.actors.variables]
    (first,) = _train_actors(system, buffer, 2)  # one compiled call of two steps
    assert any(np.any(v.numpy() != w) for v, w in zip(system.actors.variables, initial))
    system.restart_actor_training(beta=2.5, t_max=0.1, score_weight="one")
    assert system.beta == pytest.approx(2.5) and system.training_step_ctr == 0
    assert all(np.array_equal(v.numpy(), w) for v, w in zip(system.actors.variables, initial))
    with pytest.raises(ValueError, match="beta must be > 0"):
        system.restart_actor_training(beta=0.0)
    with pytest.raises(ValueError, match="score_weight"):
        system.restart_actor_training(score_weight="sigma")
    assert np.isfinite(first["losses/actor_loss"])


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(beta=0.0), "beta must be > 0"),
        (dict(t_min=0.5, t_max=0.1), "t_min < t_max"),
        (dict(expectile=1.0), "expectile"),
        (dict(score_weight="sigma"), "score_weight"),
    ],
)
def test_bad_hyperparameters_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        load_system("omsd")(BanditEnvironment(), _Quiet(), **{**TINY, **bad})


# The stage keys of the TINY systems at seed 5 before behaviour_seed existed (host "standalone").
PINNED_STAGE_KEYS = {
    "omsd": ("8dd4c0be0807d178", "d00ba2d3f967b202"),
    "brpo_fac": ("8dd4c0be0807d178", "2ab3d56e07dcf008"),
    "brpo_ind": ("ffa5047ed5c593a3", "2ab3d56e07dcf008"),
    "brpo_jal": ("8dd4c0be0807d178", "55b989c24a1ea998"),
}


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_default_behaviour_seed_keeps_every_stage_key(name, monkeypatch):
    """behaviour_seed=None (the default) is the run's seed: the cache keys are those made before it
    existed, and naming the run's seed explicitly is the same stage."""
    from og_marl_omsd import host
    from og_marl_omsd.systems.pretraining import stage_key

    monkeypatch.setattr(host, "HOST", "standalone")

    def keys(**overrides):
        system = load_system(name)(BanditEnvironment(), _Quiet(), seed=5, **{**TINY, **overrides})
        return stage_key(system.critic_config, "data"), stage_key(system.behaviour_config, "data")

    assert keys() == PINNED_STAGE_KEYS[name]
    assert keys(behaviour_seed=5) == PINNED_STAGE_KEYS[name]
    other = keys(behaviour_seed=6)
    assert other[0] == PINNED_STAGE_KEYS[name][0] and other[1] != PINNED_STAGE_KEYS[name][1]


def test_behaviour_seed_changes_only_the_behaviour_models(buffer, tmp_path):
    """The A/A pair: two runs that differ only in system.behaviour_seed share the critic (weights and
    cache entry), the initial actors and the actors' batch stream; their behaviour models differ."""
    from og_marl_omsd.runner.device_data import DeviceDataset
    from og_marl_omsd.systems.pretraining import PretrainedCache

    def pair():
        fac = load_system("brpo_fac")
        return [fac(BanditEnvironment(), _Quiet(), seed=5, behaviour_seed=b, **TINY) for b in (None, 9)]

    cache = PretrainedCache(str(tmp_path))
    runs = pair()
    keys = [system.pretrain(buffer, cache, "data") for system in runs]
    assert keys[0]["critic"] == keys[1]["critic"] and keys[0]["behaviour"] != keys[1]["behaviour"]
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("critic_")]) == 1  # one critic, trained once
    fresh = pair()
    for system in fresh:  # trained here, not loaded: the critic's training is the same too
        system.pretrain(buffer)
    for pair in (runs, fresh):
        first, second = pair
        for a, b in zip(first.critic.variables, second.critic.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        for a, b in zip(first.actors.variables, second.actors.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert len(first.behaviour_model.variables) == len(second.behaviour_model.variables)
        assert all(
            not np.array_equal(a.numpy(), b.numpy())
            for a, b in zip(first.behaviour_model.trainable_variables, second.behaviour_model.trainable_variables)
            if np.any(a.numpy() != 0)  # weights that start at 0 (biases) may still agree
        )
    dataset = DeviceDataset.of(buffer)
    batches = [dataset.sample(system._batch_rng) for system in fresh]  # the actors' next batch
    for field in ("observations", "actions", "state"):
        np.testing.assert_array_equal(batches[0][field].numpy(), batches[1][field].numpy())
    # ... and the actor updates draw the same diffusion times and noise.
    np.testing.assert_array_equal(fresh[0]._rng.state.numpy(), fresh[1]._rng.state.numpy())


def test_reward_scale_changes_only_the_critics_reward_targets(buffer, monkeypatch):
    """Reward scaling off (``task.reward_normalisation=none``, reward_scale 1) against a scale of 7:
    the critic regresses on the team reward times the scale (the bandit's r = a_1 a_2, one-step
    episodes), and only the critic's stage key changes."""
    from og_marl_omsd.models.networks import IQLCritic
    from og_marl_omsd.systems.pretraining import stage_key

    seen = {"reward": tf.Variable(tf.zeros([64])), "actions": tf.Variable(tf.zeros([64, 2, 1]))}
    q_loss = IQLCritic.q_loss

    def recording(self, state, actions, reward, *rest):
        seen["reward"].assign(reward)
        seen["actions"].assign(actions)
        return q_loss(self, state, actions, reward, *rest)

    monkeypatch.setattr(IQLCritic, "q_loss", recording)
    rewards, keys = {}, {}
    for scale in (1.0, 7.0):
        tiny = {**TINY, "critic_steps": 1, "behaviour_steps": 1}
        system = load_system("brpo_fac")(BanditEnvironment(), _Quiet(), seed=6, reward_scale=scale, **tiny)
        system.pretrain(buffer)
        actions = seen["actions"].numpy()
        rewards[scale] = seen["reward"].numpy()
        np.testing.assert_allclose(rewards[scale], scale * actions[:, 0, 0] * actions[:, 1, 0], rtol=1e-5, atol=1e-6)
        keys[scale] = stage_key(system.critic_config, "data"), stage_key(system.behaviour_config, "data")
    assert np.any(rewards[1.0] != 0)
    np.testing.assert_allclose(rewards[7.0], 7.0 * rewards[1.0], rtol=1e-6)  # the same batch, scaled
    assert keys[1.0][0] != keys[7.0][0] and keys[1.0][1] == keys[7.0][1]


def test_subtract_noise_switch_changes_the_actor_loss_by_its_formula(buffer):
    """``e - z`` (default) against ``e`` on the same pretrained parts, actors and random stream: the
    losses differ by exactly ``sum_i mean_b w(t) <z_i, a_i>`` (the baseline term), nothing else."""
    from og_marl_omsd.runner.device_data import DeviceDataset
    from og_marl_omsd.systems.pretraining import stage_key

    runs = {}
    for subtract in (True, False):
        system = load_system("omsd")(BanditEnvironment(), _Quiet(), seed=7, subtract_noise=subtract, **TINY)
        runs[subtract] = system
    assert stage_key(runs[True].critic_config, "d") == stage_key(runs[False].critic_config, "d")
    assert stage_key(runs[True].behaviour_config, "d") == stage_key(runs[False].behaviour_config, "d")
    for system in runs.values():
        system.pretrain(buffer)
    batch = DeviceDataset.of(buffer).sample(tf.random.Generator.from_seed(3))
    losses = {}
    for subtract, system in runs.items():
        system._rng.reset_from_seed(21)
        losses[subtract] = float(system._actor_update(batch)[0])
    rng = tf.random.Generator.from_seed(21)  # the draws of the update: t, then z
    actions = load_system("omsd")(BanditEnvironment(), _Quiet(), seed=7, **TINY).actors(batch["observations"])
    t = rng.uniform([64], 0.02, 0.98)  # the system default range
    noise = rng.normal(tf.shape(actions))
    weight = vp_schedule(t)[1] ** 2  # the default w(t) = sigma^2
    baseline = tf.reduce_sum(tf.reduce_mean(tf.reduce_sum(weight[:, None, None] * noise * actions, -1), 0))
    assert abs(float(baseline)) > 1e-3
    np.testing.assert_allclose(losses[True] - losses[False], -float(baseline), rtol=1e-4, atol=1e-6)


class _WideObservations:
    """Just what the systems read from an environment: 2 agents, observations of 5, a state of 3."""

    agents = ["agent_0", "agent_1"]
    num_actions = 2
    observation_shape = (5,)
    state_shape = (3,)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_observation_conditioned_behaviour_models_read_the_observations(name):
    """behaviour_condition=observation: the behaviour networks take o_i (JAL: all of them) in place
    of s, and only the behaviour stage's key changes."""
    from og_marl_omsd.systems.pretraining import stage_key

    def built(condition):
        system = load_system(name)(_WideObservations(), _Quiet(), seed=5, behaviour_condition=condition, **TINY)
        model = system.build_behaviour_model()
        weights = [v for v in model.trainable_variables if "input" in v.name and v.name.endswith("w:0")][0]
        keys = stage_key(system.critic_config, "d"), stage_key(system.behaviour_config, "d")
        return int(weights.shape[-2]), keys, system

    state_width, state_keys, _ = built("state")
    observation_width, observation_keys, system = built("observation")
    readers = 2 if name == "brpo_jal" else 1  # the joint model reads both agents' observations
    assert observation_width - state_width == readers * 5 - 3
    assert observation_keys[0] == state_keys[0] and observation_keys[1] != state_keys[1]
    observations, state = tf.zeros([4, 2, 5]), tf.ones([4, 3])
    assert system.behaviour_input(observations, state) is observations
    with pytest.raises(ValueError, match="behaviour_condition must be one of state, observation"):
        load_system(name)(_WideObservations(), _Quiet(), behaviour_condition="obs", **TINY)


def test_observation_condition_changes_nothing_else(buffer):
    """On the bandit every agent observes what the state holds (ones), so an observation-conditioned
    OMSD trains the very same critic, behaviour model and actors as the state-conditioned one."""
    runs = {
        condition: load_system("omsd")(BanditEnvironment(), _Quiet(), seed=8, behaviour_condition=condition, **TINY)
        for condition in ("state", "observation")
    }
    for system in runs.values():
        system.pretrain(buffer)
        system.train(buffer, training_steps=3, evaluation_every=None, num_eval_episodes=1)
    for part in ("critic", "behaviour_model", "actors"):
        first, second = (getattr(system, part).variables for system in runs.values())
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_cache_entry_records_its_data_and_serves_no_other(tmp_path, capsys):
    import sonnet as snt
    import tensorflow as tf

    from og_marl_omsd.systems.pretraining import PretrainedCache

    def module():
        layer = snt.Linear(2)
        layer(tf.zeros([1, 3]))
        return layer

    cache = PretrainedCache(str(tmp_path))
    path = cache.save("critic_joint", "k1", module(), {"steps": 1}, dataset_fingerprint="aaaa")
    assert (tmp_path / "critic_joint-k1" / "DATASET").read_text() == "aaaa"
    assert cache.load("critic_joint", "k1", module(), dataset_fingerprint="aaaa")
    assert not cache.load("critic_joint", "k1", module(), dataset_fingerprint="bbbb")
    assert "trained on data with fingerprint aaaa, not bbbb" in capsys.readouterr().out
    assert not os.path.exists(path)  # inconsistent with its key: discarded, trained again
