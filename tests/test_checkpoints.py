"""The NaN guard's message says what will actually happen (issue 22): it names a checkpoint
only when one exists."""

import pytest
import tensorflow as tf

from og_marl_omsd.support.checkpoints import FiniteGuard, StageCheckpoint
from og_marl_omsd.support.errors import NonFiniteLossError


def _guard_with_nan_at_first_step():
    guard = FiniteGuard()
    guard.update({"loss": tf.constant(float("nan"))})
    return guard


def test_nan_before_any_checkpoint_does_not_promise_a_resume_from_one(tmp_path):
    guard = _guard_with_nan_at_first_step()
    checkpoint = StageCheckpoint(str(tmp_path), "stage", 5, trackables={}, guard=guard)
    with pytest.raises(NonFiniteLossError) as error:
        checkpoint.save(5, 20)
    message = str(error.value)
    assert "has no checkpoint (none was written before the loss went bad)" in message
    assert "starts the stage from step 0" in message
    assert "resumes from that checkpoint" not in message and "last good checkpoint is" not in message


def test_nan_without_checkpointing_says_so():
    with pytest.raises(NonFiniteLossError, match=r"no checkpoint \(checkpointing is off\)") as error:
        _guard_with_nan_at_first_step().check("critic")
    assert "resumes" not in str(error.value)


def test_nan_after_a_checkpoint_names_it_and_resumes_from_it(tmp_path):
    guard = FiniteGuard()
    checkpoint = StageCheckpoint(str(tmp_path), "stage", 5, trackables={}, guard=guard)
    checkpoint.save(5, 20)
    guard.update({"loss": tf.constant(float("inf"))})
    with pytest.raises(NonFiniteLossError, match=r"last good checkpoint is .*step-000000005 \(step 5\)") as error:
        checkpoint.save(10, 20)
    assert "resumes from that checkpoint" in str(error.value)
