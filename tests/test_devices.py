"""Device setup (og_marl_omsd/runner/devices.py): only when an entry point asks, once per process."""

import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Records every device setting TF and JAX are asked for, then imports what a run imports.
_IMPORT_ONLY = """
import json, jax, tensorflow as tf
calls = []
real_list = tf.config.list_physical_devices
tf.config.list_physical_devices = lambda *a, **k: calls.append(["list_physical_devices", a]) or real_list(*a, **k)
tf.config.experimental.set_memory_growth = lambda *a: calls.append(["set_memory_growth", repr(a)])
tf.config.set_visible_devices = lambda *a, **k: calls.append(["set_visible_devices", repr(a)])
real_update = jax.config.update
jax.config.update = lambda *a: calls.append(["jax.config.update", a]) or real_update(*a)
import og_marl_omsd, og_marl_omsd.runner.device_data, og_marl_omsd.runner.run, og_marl_omsd.runner.steps
import og_marl_omsd.systems.pretraining, og_marl_omsd.support.checkpoints, og_marl_omsd.support.replay
from og_marl_omsd.runner.registry import load_system
load_system("omsd")
from og_marl_omsd.runner import devices
print("RESULT " + json.dumps({"calls": calls, "set_up": devices.devices_set_up()}))
"""


def test_importing_the_package_configures_no_device():
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ONLY], capture_output=True, text=True, env=env, timeout=300, cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result == {"calls": [], "set_up": False}


@pytest.fixture
def recorded(monkeypatch):
    import jax
    import tensorflow as tf

    from og_marl_omsd.runner import devices

    calls = []
    monkeypatch.setattr(devices, "_done", False)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu:0", "gpu:1"])
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda gpu, on: calls.append((gpu, on)))
    monkeypatch.setattr(jax.config, "update", lambda name, value: calls.append((name, value)))
    return devices, calls


def test_setup_devices_grows_gpu_memory_keeps_jax_on_the_cpu_once(recorded):
    devices, calls = recorded
    assert devices.setup_devices() == ["gpu:0", "gpu:1"]
    assert calls == [("jax_platform_name", "cpu"), ("gpu:0", True), ("gpu:1", True)]
    assert devices.devices_set_up()
    devices.setup_devices()
    assert len(calls) == 3  # idempotent


def test_setup_devices_after_tf_started_keeps_the_settings_it_has(recorded, monkeypatch):
    import tensorflow as tf

    devices, calls = recorded

    def initialised(gpu, on):
        raise RuntimeError("Physical devices cannot be modified after being initialized")

    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", initialised)
    assert devices.setup_devices() == ["gpu:0", "gpu:1"]
    assert devices.devices_set_up() and calls == [("jax_platform_name", "cpu")]


def test_the_runner_sets_the_devices_up_through_one_function():
    from og_marl_omsd.runner import devices, run

    assert run.setup_devices is devices.setup_devices  # steps and evaluate call it through run
