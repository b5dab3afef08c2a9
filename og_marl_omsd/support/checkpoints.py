"""Checkpoint and resume for training stages, and the guard that stops a stage on a NaN.

A stage (the IQL critic, a behaviour model, the actors) is resumable when everything its
next step depends on is saved together: networks, optimiser state, ``tf.random.Generator``
state, the step counter and the replay sampler's random key (plus any run state, such as
the evaluation curve). :class:`StageCheckpoint` saves them every ``every`` steps under
``<directory>/<stage>/``::

    LATEST                  the name of the newest complete checkpoint (replaced atomically)
    step-000000400/         tf.train.Checkpoint files + state.json (step, sampler key, ...)

A save writes a temporary directory, renames it to ``step-<k>`` and only then points
``LATEST`` at it (``os.replace``), then deletes the ones older than the previous checkpoint,
which is kept as a fallback: a restore that finds the newest damaged (or ``LATEST`` empty)
falls back to it with a message, and a stage with checkpoints none of which can be read
stops rather than silently starting again from step 0. :class:`FiniteGuard` records, on the device and
without a host sync per step, the first step whose logs were not finite; it is read before
every save, so a NaN never overwrites the last good checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from og_marl_omsd.support.errors import CheckpointWriteError, NonFiniteLossError, StageStopped, UserError
from og_marl_omsd.support.files import remove_leftovers, write_text
from og_marl_omsd.support.replay import ReplayAdapter

LATEST = "LATEST"
STATE_FILE = "state.json"
_TEMPORARY_PREFIX = ".tmp-"


# ---------------------------------------------------------------------- replay sampling
def sampler_key(replay_buffer: Any) -> Optional[list]:
    """The replay buffer's sampling key as a list of ints (``None`` if it keeps no key).

    OG-MARL's ``FlashbaxReplayBuffer`` and the standalone one both draw every batch from a
    JAX key split in ``sample()`` (:attr:`og_marl_omsd.support.replay.ReplayAdapter.rng_key`).
    """
    return None if replay_buffer is None else ReplayAdapter(replay_buffer).rng_key


def set_sampler_key(replay_buffer: Any, key: Sequence[int]) -> None:
    if replay_buffer is not None:
        ReplayAdapter(replay_buffer).rng_key = key


def reseed_sampler(replay_buffer: Any, seed: int) -> None:
    """Start the buffer's batch stream from ``seed``: a stage's batches then depend only on
    its own seed, not on which earlier stages ran in this process or came from a cache."""
    if replay_buffer is not None:
        ReplayAdapter(replay_buffer).reseed(seed)


# ---------------------------------------------------------------------- NaN guard
class FiniteGuard(tf.Module):
    """Counts a stage's steps and remembers the first whose logs were not all finite.

    ``update`` runs inside the compiled step (no host sync); ``check`` reads two scalars
    and raises :class:`NonFiniteLossError`.
    """

    def __init__(self, name: Optional[str] = None):
        super().__init__(name=name)
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps")
        self.first_bad_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="first_bad_step")

    def update(self, logs: Mapping[str, tf.Tensor]) -> None:
        step = self.steps.assign_add(1)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(tf.cast(v, tf.float32))) for v in logs.values()])
        newly_bad = tf.logical_and(tf.logical_not(finite), self.first_bad_step < 0)
        self.first_bad_step.assign(tf.where(newly_bad, step, self.first_bad_step))

    def reset(self, step: int = 0) -> None:
        self.steps.assign(int(step))
        self.first_bad_step.assign(-1)

    def check(self, stage: str, checkpoint: Optional["StageCheckpoint"] = None, logs: Optional[Mapping] = None) -> None:
        bad_step = int(self.first_bad_step.numpy())
        if bad_step < 0:
            return
        values = ""
        if logs:
            bad = [f"{k} = {float(v)}" for k, v in logs.items() if not np.isfinite(float(v))]
            values = f" (now {', '.join(bad)})" if bad else ""
        latest = checkpoint.latest() if checkpoint is not None else None
        if latest is not None and checkpoint is not None:
            where = (
                f"The last good checkpoint is {checkpoint.describe_latest()}; it was not overwritten. Fix the "
                "configuration or the data; running the same command again resumes from that checkpoint."
            )
        else:
            why = "checkpointing is off" if checkpoint is None else "none was written before the loss went bad"
            where = (
                f"This stage has no checkpoint ({why}), so nothing of it was kept. Fix the configuration or the "
                "data; running the same command again starts the stage from step 0."
            )
        raise NonFiniteLossError(
            f"Stage {stage} stopped: a non-finite loss (NaN or inf) appeared at step {bad_step}{values}. {where} "
            "Usual causes: a learning rate too high, a too small or too large beta, or NaN/inf in the dataset."
        )


# ---------------------------------------------------------------------- checkpoints
def create_optimiser_state(optimisers: Mapping[Any, Sequence[tf.Variable]]) -> None:
    """Create each Sonnet optimiser's slot variables (before a restore) without moving anything:
    a zero update leaves every parameter where it is (Adam: zero moments give a zero step);
    the restore then overwrites the slots and the step count."""
    for optimiser, variables in optimisers.items():
        variables = list(variables)
        optimiser.apply([tf.zeros_like(v) for v in variables], variables)


class StageCheckpoint:
    """Atomic, resumable checkpoints of one stage under ``<directory>/<stage>/``.

    Args:
        directory: the run's checkpoint directory.
        stage: the stage's name (a directory name; shown in messages).
        every: save when the completed step count is a multiple of ``every`` (and at the end).
        trackables: what ``tf.train.Checkpoint`` saves (networks, optimisers, generators).
        optimisers: ``{optimiser: variables}`` whose slots are created before a restore.
        replay_buffer: whose sampling key is saved and restored.
        guard: read before every save; a non-finite step stops the stage instead.
        run_state: an object with ``checkpoint_state() -> dict`` and
            ``restore_checkpoint_state(dict)`` saved alongside (e.g. the evaluation curve).
        label: the stage's name in messages (default ``stage``).
        dataset_fingerprint: the content fingerprint of the data the stage trains on: saved
            with every checkpoint; a checkpoint made from other data is never restored.
    """

    def __init__(
        self,
        directory: str,
        stage: str,
        every: int,
        trackables: Mapping[str, Any],
        optimisers: Optional[Mapping[Any, Sequence[tf.Variable]]] = None,
        replay_buffer: Any = None,
        guard: Optional[FiniteGuard] = None,
        run_state: Any = None,
        label: Optional[str] = None,
        dataset_fingerprint: Optional[str] = None,
    ):
        if int(every) <= 0:
            raise ValueError(f"checkpoint every must be > 0 steps, got {every}.")
        self.path = os.path.join(directory, stage)
        self.label = label or stage
        self.every = int(every)
        self._checkpoint = tf.train.Checkpoint(**trackables)
        self._optimisers = dict(optimisers or {})
        self._replay_buffer = replay_buffer
        self._guard = guard
        self._run_state = run_state
        self.dataset_fingerprint = dataset_fingerprint

    # ------------------------------------------------------------------ reading
    def _step_dirs(self) -> list:
        """The ``step-<k>`` directories on disk, newest first."""
        try:
            names = os.listdir(self.path)
        except OSError:
            return []
        return sorted((name for name in names if name.startswith("step-") and name[5:].isdigit()), reverse=True)

    def _latest_name(self) -> Optional[str]:
        """The name ``LATEST`` holds, ``None`` when there is no ``LATEST``, ``""`` when it is damaged."""
        try:
            with open(os.path.join(self.path, LATEST)) as handle:
                name = handle.read().strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return ""
        return name if name.startswith("step-") and os.path.isdir(os.path.join(self.path, name)) else ""

    def latest(self) -> Optional[str]:
        """The directory of the newest committed checkpoint (``LATEST``), or ``None``."""
        name = self._latest_name()
        return os.path.join(self.path, name) if name else None

    def candidates(self) -> list:
        """Checkpoints to restore from, best first: ``LATEST``, then the older ones kept as a
        fallback. With ``LATEST`` missing or damaged: every ``step-<k>`` directory, newest first."""
        name = self._latest_name()
        steps = self._step_dirs()
        if name:
            steps = [name] + [other for other in steps if other < name]
        return [os.path.join(self.path, other) for other in steps]

    def latest_step(self) -> Optional[int]:
        latest = self.latest()
        if latest is None:
            return None
        try:
            return int(read_state(latest)["step"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def describe_latest(self) -> str:
        latest = self.latest()
        return "none (no checkpoint was written yet)" if latest is None else f"{latest} (step {self.latest_step()})"

    def restore(self, total: int) -> int:
        """Restore the newest readable checkpoint, print that the stage resumes, return its step (0 if none).

        A damaged newest checkpoint (or ``LATEST``) falls back to the previous one, with a
        message; a stage that has checkpoints but none readable is never restarted silently.

        Raises:
            StageStopped: if no checkpoint can be read, or one was made for another ``total``.
        """
        candidates = self.candidates()
        if not candidates:
            return 0
        if self._latest_name() is not None and not self._latest_name():
            print(
                f"[resume] {os.path.join(self.path, LATEST)} is empty or damaged; looking for the newest complete "
                f"{self.label} checkpoint instead",
                flush=True,
            )
        failures = []
        for candidate in candidates:
            try:
                state = read_state(candidate)
                int(state["step"]), int(state["total_steps"])
                create_optimiser_state(self._optimisers)
                self._checkpoint.read(os.path.join(candidate, "ckpt")).assert_consumed()
            except (
                OSError,
                ValueError,
                KeyError,
                TypeError,
                IndexError,
                AssertionError,
                RuntimeError,
                tf.errors.OpError,
            ) as error:  # a truncated data file raises IndexError
                _stop_on_access_error(error, candidate, self.label)  # unreadable is not damaged
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                failures.append(f"{candidate}: {reason}")
                print(
                    f"[resume] the {self.label} checkpoint {candidate} cannot be read ({reason}); trying the "
                    "previous one",
                    flush=True,
                )
                continue
            return self._resume_from(candidate, state, total, fallback=bool(failures))
        raise StageStopped(
            f"The {self.label} checkpoints in {self.path} cannot be restored ({'; '.join(failures)}): they are damaged "
            f"or were made for other networks. Delete {self.path} to train the stage from the start."
        )

    def _resume_from(self, latest: str, state: Dict[str, Any], total: int, fallback: bool) -> int:
        step = int(state["step"])
        made_from = state.get("dataset_fingerprint")
        if self.dataset_fingerprint is not None and made_from is not None and made_from != self.dataset_fingerprint:
            raise UserError(
                f"The {self.label} checkpoint {latest} was trained on data with fingerprint {made_from}, but this run "
                f"reads data with fingerprint {self.dataset_fingerprint}: the dataset changed since. Resuming would "
                "mix two datasets, so it is refused. Put the dataset it was trained on back to resume, or choose "
                "another run_dir=<path> to train on the new data."
            )
        if int(state["total_steps"]) != int(total) or step > int(total):
            raise StageStopped(
                f"The {self.label} checkpoint {latest} is step {step} of {state['total_steps']}, but this run asks "
                f"for {total} steps. Run with the configuration that made it, or delete {self.path} to start the "
                "stage again."
            )
        if state.get("sampler_key") is not None:
            set_sampler_key(self._replay_buffer, state["sampler_key"])
        if self._run_state is not None and "run_state" in state:
            self._run_state.restore_checkpoint_state(state["run_state"])
        if self._guard is not None:
            self._guard.reset(step)
        if fallback:
            print(f"[resume] fell back to the older {self.label} checkpoint {latest}", flush=True)
        if self._latest_name() != os.path.basename(latest):  # so that the next save replaces a damaged newer one
            _write_file(os.path.join(self.path, LATEST), os.path.basename(latest))
        print(f"[resume] resuming {self.label} from step {step} ({latest})", flush=True)
        return step

    # ------------------------------------------------------------------ writing
    def due(self, step: int, total: int) -> bool:
        return step % self.every == 0 or step == total

    def maybe_save(self, step: int, total: int) -> None:
        if self.due(step, total):
            self.save(step, total)

    def save(self, step: int, total: int) -> str:
        """Write the checkpoint of ``step`` atomically (after the NaN guard passes); returns its directory."""
        if self._guard is not None:
            self._guard.check(self.label, self)
        start = time.time()
        name = f"step-{int(step):09d}"
        final = os.path.join(self.path, name)
        latest = self.latest()
        if latest is not None and os.path.basename(latest) == name:
            return final  # this step is already the newest checkpoint
        temporary = os.path.join(self.path, f"{_TEMPORARY_PREFIX}{name}-{os.getpid()}")
        state = {
            "stage": self.label,
            "step": int(step),
            "total_steps": int(total),
            "sampler_key": sampler_key(self._replay_buffer),
        }
        if self.dataset_fingerprint is not None:
            state["dataset_fingerprint"] = self.dataset_fingerprint
        if self._run_state is not None:
            state["run_state"] = self._run_state.checkpoint_state()
        try:
            os.makedirs(self.path, exist_ok=True)
            shutil.rmtree(temporary, ignore_errors=True)
            os.makedirs(temporary)
            self._checkpoint.write(os.path.join(temporary, "ckpt"))
            _write_file(os.path.join(temporary, STATE_FILE), json.dumps(state, indent=2))
            if os.path.exists(final):  # left by a crash between a rename and the LATEST update
                shutil.rmtree(final)
            os.rename(temporary, final)
            _write_file(os.path.join(self.path, LATEST), name)  # the commit point
        except (OSError, tf.errors.OpError) as error:
            shutil.rmtree(temporary, ignore_errors=True)
            reason = getattr(error, "strerror", None) or str(error)
            raise CheckpointWriteError(
                f"Could not write the {self.label} checkpoint of step {step} in {self.path}: {reason}. The last good "
                f"checkpoint {self.describe_latest()} is intact. Free disk space or fix permissions, then run the same "
                "command again to resume from it."
            ) from error
        keep = {name, LATEST, os.path.basename(latest) if latest else name}  # the previous one stays as a fallback
        for entry in os.listdir(self.path):
            if entry not in keep and (entry.startswith("step-") or entry.startswith(_TEMPORARY_PREFIX)):
                shutil.rmtree(os.path.join(self.path, entry), ignore_errors=True)
        remove_leftovers(self.path)
        print(f"[checkpoint] {self.label} step {step}/{total} -> {final} ({time.time() - start:.3f} s)", flush=True)
        return final


def _stop_on_access_error(error: BaseException, checkpoint: str, label: str) -> None:
    """Raise :class:`StageStopped` naming ``error`` when the checkpoint could not be read for a
    reason other than its content (permissions, I/O): such a checkpoint is not called damaged,
    not skipped for an older one and never advised to be deleted."""
    import errno

    denied = isinstance(error, tf.errors.PermissionDeniedError) or (
        isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EIO)
    )
    if not denied:
        return
    reason = getattr(error, "strerror", None) or (str(error).strip().splitlines() or [type(error).__name__])[0]
    where = getattr(error, "filename", None) or checkpoint
    raise StageStopped(
        f"The {label} checkpoint {checkpoint} could not be read: {reason} ({where}). "
        "This is an access problem (permissions or the disk), not a damaged checkpoint: nothing was changed. Give "
        "this user access to the run directory (or check the disk) and run the same command again to resume."
    )


def _write_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`og_marl_omsd.support.files.write_text`)."""
    write_text(path, text)


def read_state(checkpoint_dir: str) -> Dict[str, Any]:
    """The ``state.json`` of a checkpoint directory (step, total steps, sampler key, run state)."""
    with open(os.path.join(checkpoint_dir, STATE_FILE)) as handle:
        return json.load(handle)
