"""The process's devices, set up once by the entry point: never when a module is imported.

:func:`setup_devices` keeps JAX (flashbax's replay sampling) on the CPU and lets TF grow its
GPU memory instead of reserving all of it. The runner calls it before anything touches TF or
JAX (:func:`og_marl_omsd.runner.run.run`, the environment, evaluation); a script or test that
builds systems or buffers itself calls it first. Importing this module imports neither TF nor JAX.
"""

from __future__ import annotations

import os

_done = False


def setup_devices() -> list:
    """Set the devices up (once per process; later calls change nothing) and return the GPUs TF sees.

    JAX's platform is the CPU; every GPU TF sees grows its memory. A GPU that TF has already
    initialised keeps the setting it has.
    """
    global _done
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if not _done:
        import jax

        jax.config.update("jax_platform_name", "cpu")
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except (RuntimeError, ValueError):  # already initialised: the setting is fixed by then
                pass
        _done = True
    return tf.config.list_physical_devices("GPU")


def devices_set_up() -> bool:
    """Whether :func:`setup_devices` has run in this process."""
    return _done
