"""systems/pretraining.py: the pretrained cache (stage keys, damaged and unwritable entries)."""

import errno
import os
import shutil

import pytest

from og_marl_omsd.runner import run as runner
from og_marl_omsd.support import files

from conftest import PRETRAINED_STAGES, SMALL_RUN, assert_same_results, run_config


@pytest.mark.slow
def test_cache_is_not_served_to_a_run_with_another_replay_batch_size(tmp_path, small_vault_dir, reference, capsys):
    _, _, shared_cache = reference
    cache = tmp_path / "shared"
    shutil.copytree(shared_cache, cache)
    other = [*SMALL_RUN, "replay.batch_size=8", f"vault_dir={small_vault_dir}"]
    capsys.readouterr()
    results = runner.run(run_config(*other, f"run_dir={tmp_path / 'run'}", f"pretrained_dir={cache}"))
    output = capsys.readouterr().out
    assert "loaded from cache" not in output
    assert all(f"[pretrain] {stage}: training 10 steps" in output for stage in PRETRAINED_STAGES)
    fresh = runner.run(
        run_config(*other, f"run_dir={tmp_path / 'fresh'}", f"pretrained_dir={tmp_path / 'fresh_cache'}")
    )
    assert_same_results(results, fresh)
    assert results["pretrained_cache_keys"] != reference[0]["pretrained_cache_keys"]


@pytest.mark.slow
def test_cache_key_covers_host_buffer_settings_and_key_version(monkeypatch):
    from og_marl_omsd import host
    from og_marl_omsd.standalone.replay_buffers import FlashbaxReplayBuffer
    from og_marl_omsd.systems import pretraining

    config = {"steps": 10, "seed": 0}

    def key(buffer):
        return pretraining.stage_key(config, "fingerprint", {"replay": pretraining.replay_signature(buffer)})

    base = key(FlashbaxReplayBuffer(sequence_length=2, batch_size=32))
    assert base == key(FlashbaxReplayBuffer(sequence_length=2, batch_size=32, seed=7))  # sampling seed: not learning
    assert base != key(FlashbaxReplayBuffer(sequence_length=3, batch_size=32))
    assert base != key(FlashbaxReplayBuffer(sequence_length=2, batch_size=8))
    assert base != key(FlashbaxReplayBuffer(sequence_length=2, batch_size=32, sample_period=2))

    class OtherBuffer(FlashbaxReplayBuffer):  # another implementation (OG-MARL's) with the same settings
        pass

    assert base != key(OtherBuffer(sequence_length=2, batch_size=32))
    monkeypatch.setattr(host, "HOST", "og_marl" if host.HOST == "standalone" else "standalone")
    assert base != key(FlashbaxReplayBuffer(sequence_length=2, batch_size=32))
    monkeypatch.undo()
    monkeypatch.setattr(pretraining, "KEY_VERSION", pretraining.KEY_VERSION - 1)  # entries of an older rule
    assert base != key(FlashbaxReplayBuffer(sequence_length=2, batch_size=32))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate_data", "empty_complete", "no_index"])
def test_damaged_cache_entry_is_a_miss_and_is_replaced(damage, tmp_path, small_vault_dir, reference, capsys):
    expected, _, reference_cache = reference
    cache = tmp_path / "cache"
    shutil.copytree(reference_cache, cache)
    entry = next(cache.glob("critic_joint-*"))
    if damage == "truncate_data":
        data = next(entry.glob("module.data-*"))
        data.write_bytes(data.read_bytes()[:40])
    elif damage == "empty_complete":
        (entry / "COMPLETE").write_text("")
    else:
        (entry / "module.index").unlink()
    capsys.readouterr()
    results = runner.run(
        run_config(*SMALL_RUN, f"vault_dir={small_vault_dir}", f"run_dir={tmp_path / 'run'}", f"pretrained_dir={cache}")
    )
    output = capsys.readouterr().out
    assert f"the cache entry {entry} is damaged" in output
    assert "[pretrain] critic_joint: training 10 steps" in output
    assert "[pretrain] behaviour_sequential: loaded from cache" in output
    assert_same_results(results, expected)
    assert (entry / "COMPLETE").read_text() == entry.name.split("-", 1)[1]  # replaced by a complete entry
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["actors"]  # 11: no copies of cached stages


@pytest.mark.slow
def test_full_disk_writing_the_cache_continues_without_caching(
    tmp_path, small_vault_dir, reference, monkeypatch, capsys
):
    expected = reference[0]

    make_partial = files.partial_dir

    def disk_full(path):  # the cache's disk is full (the run directory's is not)
        if os.path.abspath(path).startswith(str(tmp_path / "cache")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return make_partial(path)

    monkeypatch.setattr(files, "partial_dir", disk_full)
    results = runner.run(
        run_config(
            *SMALL_RUN,
            f"vault_dir={small_vault_dir}",
            f"run_dir={tmp_path / 'run'}",
            f"pretrained_dir={tmp_path / 'cache'}",
        )
    )
    assert capsys.readouterr().out.count("continuing without caching it") == 2
    assert_same_results(results, expected)
    assert os.listdir(tmp_path / "cache") == [".locks"]  # nothing partial left behind
