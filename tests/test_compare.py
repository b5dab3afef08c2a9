"""baselines/compare.py: every bad setting is one paragraph before anything is written or
launched, and Ctrl-C is one line (exit 130) (issue 22)."""

import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

COMPARE = os.path.join(REPO_ROOT, "baselines", "compare.py")


def compare(*arguments, cwd):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("OG_MARL_OMSD_VERBOSE", None)  # the default: quiet
    return subprocess.run(
        [sys.executable, COMPARE, *arguments], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.mark.parametrize(
    "arguments,fragment",
    [
        (["--out", "{file}/out"], "Cannot write the comparison output directory"),
        (["--seeds", "0"], "--seeds must be >= 1 (got 0)"),
        (["--betas", "-0.1", "0.1"], "--betas must be finite numbers > 0 (got -0.1)"),
        (["--systems", "foo"], "--systems: unknown foo (registered:"),
        (["--override", "foo"], "Error parsing override 'foo'"),
        (["--datasets", "Bogus"], "--datasets: Bogus is not a dataset of task 2halfcheetah"),
        (["--training-steps", "0"], "training_steps must be > 0"),
    ],
)
def test_bad_setting_is_one_paragraph_and_nothing_is_written(arguments, fragment, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    arguments = [argument.format(file=blocker) for argument in arguments]
    out = [] if "--out" in arguments else ["--out", str(tmp_path / "out")]
    result = compare("--smoke", "--launcher", "basic", *out, *arguments, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert fragment in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["a-file"]  # no --out folder, no vaults, nothing


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("OG_MARL_OMSD_VERBOSE", None)  # the default: quiet
    process = subprocess.Popen(
        [sys.executable, COMPARE, "--smoke", "--launcher", "basic", "--seeds", "1", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
        # Ctrl-C's default: under a non-interactive shell's background job (CI, nohup, `&`) the
        # test inherits SIGINT ignored, and so would compare.py, which would then never stop
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for line in process.stdout:
            if line.startswith("[compare] phase"):  # past the checks: a sweep is starting
                process.send_signal(signal.SIGINT)
                break
        _, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last == "Interrupted. Run the same command again: finished runs are kept and not run again."
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
