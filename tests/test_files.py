"""support/files.py: atomic writes."""

import errno
import json
import os

import pytest

from og_marl_omsd.support import files


@pytest.mark.slow
def test_interrupted_atomic_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    files.write_json(str(target), {"step_0": 1})

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError):
        files.write_json(str(target), {"step_0": 1, "step_1": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"step_0": 1}
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]
