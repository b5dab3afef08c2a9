"""The errors the runner prints as one paragraph (no traceback unless ``HYDRA_FULL_ERROR=1``).

Kept free of heavy imports so that the command line can report them without loading
TensorFlow.
"""


class UserError(Exception):
    """A mistake in the command or the data: printed as one paragraph, exit code 2."""

    exit_code = 2  # read by runners that do not know this class (og_marl.run)


class StageStopped(RuntimeError):
    """A training stage stopped safely for a reason the user must act on: exit code 3."""

    exit_code = 3


class NonFiniteLossError(StageStopped, FloatingPointError):
    """A loss (or another logged value) became NaN or infinite; the last checkpoint is kept."""


class CheckpointWriteError(StageStopped):
    """A checkpoint could not be written (full disk, permissions); the previous one is intact."""
