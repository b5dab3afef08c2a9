"""The adapter over the host's replay buffer (og_marl_omsd/support/replay.py): the only code that
reads the buffer's private fields. Batch size, sampler key round trip, the signature the
pretrained cache's keys hash, and values kept beside a buffer (never on it)."""

import gc
import weakref

import numpy as np
import pytest

from og_marl_omsd.standalone.replay_buffers import FlashbaxReplayBuffer
from og_marl_omsd.support.replay import ReplayAdapter

AGENTS = ("agent_0", "agent_1")


def _add_steps(buffer, count: int, start: int = 0) -> None:
    for t in range(start, start + count):
        buffer.add(
            {agent: np.full(3, t + i, np.float32) for i, agent in enumerate(AGENTS)},
            {agent: np.full(2, 0.1 * i, np.float32) for i, agent in enumerate(AGENTS)},
            {agent: np.float32(t) for agent in AGENTS},
            {agent: np.float32(0) for agent in AGENTS},
            {agent: np.float32(0) for agent in AGENTS},
            {"state": np.full(4, t, np.float32)},
        )


def _filled(batch_size: int = 4, steps: int = 6, seed: int = 0) -> FlashbaxReplayBuffer:
    buffer = FlashbaxReplayBuffer(sequence_length=2, max_size=64, batch_size=batch_size, seed=seed)
    _add_steps(buffer, steps)
    return buffer


class OgMarlLikeBuffer:
    """The fields OG-MARL's FlashbaxReplayBuffer keeps (its own class, another module)."""

    def __init__(self, sequence_length, max_size=50_000, batch_size=32, sample_period=1, seed=42):
        import jax

        self._sequence_length = sequence_length
        self._max_size = max_size
        self._batch_size = batch_size
        self._replay_buffer = object()
        self._buffer_state = None
        self._rng_key = jax.random.PRNGKey(seed)


def test_batch_size_and_storage_of_both_buffer_layouts():
    assert ReplayAdapter(FlashbaxReplayBuffer(sequence_length=2, batch_size=17)).batch_size == 17
    assert ReplayAdapter(OgMarlLikeBuffer(sequence_length=2, batch_size=9)).batch_size == 9
    buffer = _filled(steps=5)
    assert np.shape(ReplayAdapter(buffer).storage().experience["actions"])[:2] == (1, 64)
    for empty in (FlashbaxReplayBuffer(sequence_length=2), OgMarlLikeBuffer(sequence_length=2)):
        with pytest.raises(ValueError, match="holds no data"):
            ReplayAdapter(empty).storage()
    with pytest.raises(TypeError, match="not a FlashbaxReplayBuffer"):
        _ = ReplayAdapter(object()).batch_size
    with pytest.raises(ValueError, match="None"):
        ReplayAdapter(None)


def test_rng_key_round_trip_gives_the_same_batches():
    buffer = _filled(seed=3)
    replay = ReplayAdapter(buffer)
    saved = replay.rng_key
    assert isinstance(saved, list) and len(saved) == 2 and all(isinstance(v, int) for v in saved)
    first = np.asarray(buffer.sample()["actions"])
    assert replay.rng_key != saved  # sample() moved the key on
    buffer.sample()
    replay.rng_key = saved
    assert replay.rng_key == saved
    np.testing.assert_array_equal(np.asarray(buffer.sample()["actions"]), first)
    replay.reseed(7)
    import jax

    assert replay.rng_key == np.asarray(jax.random.PRNGKey(7)).astype(np.uint32).tolist()
    other = OgMarlLikeBuffer(sequence_length=2)
    ReplayAdapter(other).rng_key = saved
    assert ReplayAdapter(other).rng_key == saved


def test_a_buffer_without_a_key_is_left_alone():
    class Keyless:
        _batch_size = 3

    keyless = Keyless()
    replay = ReplayAdapter(keyless)
    assert replay.rng_key is None
    replay.rng_key = [1, 2]
    replay.reseed(4)
    assert vars(keyless) == {} and replay.rng_key is None


def test_signature_is_pinned_stable_and_sensitive_to_the_settings():
    signature = ReplayAdapter(FlashbaxReplayBuffer(sequence_length=2, batch_size=32)).signature()
    # The pretrained cache's keys hash this dict: a change retires every cached model.
    assert signature == {
        "class": "og_marl_omsd.standalone.replay_buffers.FlashbaxReplayBuffer",
        "batch_size": 32,
        "sample_period": 1,
        "sequence_length": 2,
    }
    assert ReplayAdapter(FlashbaxReplayBuffer(sequence_length=2, batch_size=32, seed=9)).signature() == signature
    for changed in (dict(batch_size=8), dict(sequence_length=3), dict(sample_period=2)):
        settings = {"sequence_length": 2, "batch_size": 32, **changed}
        assert ReplayAdapter(FlashbaxReplayBuffer(**settings)).signature() != signature, changed
    filled = _filled(batch_size=32)  # the data is keyed by the dataset's fingerprint, not here
    assert ReplayAdapter(filled).signature() == signature
    assert ReplayAdapter(OgMarlLikeBuffer(sequence_length=2, max_size=10)).signature() == {
        "class": f"{__name__}.OgMarlLikeBuffer",
        "batch_size": 32,
        "max_size": 10,
        "sequence_length": 2,
    }


def test_replay_signature_of_the_cache_keys_is_the_adapters():
    from og_marl_omsd.systems.pretraining import replay_signature

    buffer = _filled()
    assert replay_signature(buffer) == ReplayAdapter(buffer).signature()
    assert replay_signature(None) == {}


def test_memo_is_per_buffer_and_per_contents_and_adds_no_attribute():
    buffer, other = _filled(), _filled()
    names = set(vars(buffer))
    builds = []

    class Value:
        pass

    def build(replay):
        builds.append(replay.buffer)
        return Value()

    value = ReplayAdapter(buffer).memo("thing", build)
    assert ReplayAdapter(buffer).memo("thing", build) is value and builds == [buffer]
    assert ReplayAdapter(other).memo("thing", build) is not value and builds == [buffer, other]
    assert ReplayAdapter(buffer).memo("another", build) is not value
    assert set(vars(buffer)) == names  # nothing stuck onto the host's object
    _add_steps(buffer, 1, start=6)  # new contents: built again
    assert ReplayAdapter(buffer).memo("thing", build) is not value and len(builds) == 4
    kept = weakref.ref(ReplayAdapter(other).memo("thing", build))
    del other, builds[:]
    gc.collect()
    assert kept() is None  # dropped with its buffer


def test_device_dataset_is_cached_per_buffer_without_attributes_on_it():
    from og_marl_omsd.runner.device_data import DeviceDataset

    buffer, other = _filled(batch_size=5), _filled(batch_size=6)
    names = set(vars(buffer))
    dataset = DeviceDataset.of(buffer)
    assert DeviceDataset.of(buffer) is dataset and (dataset.batch_size, dataset.size) == (5, 5)
    assert DeviceDataset.of(other) is not dataset and DeviceDataset.of(other).batch_size == 6
    assert set(vars(buffer)) == names
    _add_steps(buffer, 2, start=6)
    assert DeviceDataset.of(buffer) is not dataset and DeviceDataset.of(buffer).size == 7
