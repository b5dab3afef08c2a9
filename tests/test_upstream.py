"""The upstream contribution: export into an OG-MARL checkout, OG-MARL's systems in the plugin's runner.

Export tests use a fake minimal OG-MARL git repository (CI). The end-to-end check against the
real OG-MARL runs only when ``OG_MARL_SOURCE`` points at an OG-MARL checkout.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from og_marl_omsd.upstream import export as upstream_export
from og_marl_omsd.upstream.og_marl_systems import OFFLINE_DIR, OG_MARL_SYSTEMS, system_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git(repo, *args):
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def tree_state(repo):
    """Everything an export could change: HEAD, branches, status, the directories and the files' bytes."""
    files, directories = {}, set()
    for root, dirs, names in os.walk(repo):
        dirs[:] = [d for d in dirs if d != ".git"]
        directories.update(os.path.relpath(os.path.join(root, d), repo) for d in dirs)
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                files[os.path.relpath(os.path.join(root, name), repo)] = handle.read()
    status = git(repo, "status", "--porcelain", "--untracked-files=all", "--ignored")
    return git(repo, "rev-parse", "HEAD"), git(repo, "branch", "--list"), status, directories, files


PLUGIN_NAMES = ("og_marl_omsd", "og-marl-omsd", "omsd", "sweepreport")


@pytest.fixture
def fake_og_marl(tmp_path):
    """A minimal OG-MARL checkout: its packaging, BaseOfflineSystem, the four systems and their YAML."""
    repo = tmp_path / "og-marl"
    offline = repo / "og_marl" / OFFLINE_DIR
    (offline / "configs").mkdir(parents=True)
    (repo / "og_marl" / "__init__.py").write_text('__version__ = "1.0.0"\n')
    (repo / "og_marl" / "baselines" / "base.py").write_text("class BaseOfflineSystem:\n    pass\n")
    (repo / "og_marl" / "replay_buffers.py").write_text(
        "class FlashbaxReplayBuffer:\n    def __init__(self, sequence_length, max_size=10, batch_size=7, seed=1):\n"
        "        pass\n"
    )
    (repo / "pyproject.toml").write_text('[project]\nname = "og-marl"\ndynamic = ["version"]\n')
    (repo / ".gitignore").write_text("env/\n")  # as OG-MARL's: every env/ directory is ignored
    for name, system in OG_MARL_SYSTEMS.items():
        (offline / f"{system.module}.py").write_text(f"class {system.class_name}(object):\n    pass\n")
        (offline / "configs" / f"{system.module}.yaml").write_text(
            textwrap.dedent(f"""\
            system_name: {name}
            training_steps: 5e5
            replay:
              sequence_length: 20
            system:
              linear_layer_dim: 64
              learning_rate: 3e-4
            """)
        )
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "fake og-marl")
    return repo


def run_export(repo, *args):
    return subprocess.run(
        [sys.executable, "-m", "og_marl_omsd.upstream", "export", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_export_commits_runner_configs_registry_and_tests_on_a_branch(fake_og_marl, tmp_path):
    patch = tmp_path / "og-marl-run.patch"
    result = run_export(fake_og_marl, "--patch", str(patch))
    assert result.returncode == 0, result.stderr
    assert git(fake_og_marl, "rev-parse", "--abbrev-ref", "HEAD").strip() == "og-marl-run"
    assert git(fake_og_marl, "status", "--porcelain") == ""
    committed = set(git(fake_og_marl, "show", "--name-only", "--format=", "HEAD").split())
    assert {
        "og_marl/run.py",
        "pyproject.toml",
        "tests/test_run.py",
        "og_marl/configs/config.yaml",
        "og_marl/configs/env/mamujoco.yaml",
        "og_marl/configs/task/2halfcheetah.yaml",
        "og_marl/configs/system/iddpg_bc.yaml",
    } <= committed
    pyproject = (fake_og_marl / "pyproject.toml").read_text()
    for name, system in OG_MARL_SYSTEMS.items():
        assert f'{name} = "{system.entry_point}"' in pyproject
    # A system's config holds its own YAML defaults, typed (3e-4 is a number) and its replay.
    import yaml

    iddpg = yaml.safe_load((fake_og_marl / "og_marl/configs/system/iddpg_bc.yaml").read_text())
    assert iddpg == {
        "system": {"name": "iddpg_bc", "linear_layer_dim": 64, "learning_rate": 3e-4},
        "replay": {"sequence_length": 20, "batch_size": 7},
    }
    assert (fake_og_marl / "og_marl/configs/system/iddpg_bc.yaml").read_text().startswith("# @package _global_\n")
    # Plugin-free: nothing committed (nor the commit message) names the plugin; OG-MARL's own defaults.
    for path in committed:
        text = git(fake_og_marl, "show", f"HEAD:{path}").lower()
        assert not [name for name in PLUGIN_NAMES if name in text], path
    assert not [name for name in PLUGIN_NAMES if name in git(fake_og_marl, "log", "-1", "--format=%B").lower()]
    config = yaml.safe_load((fake_og_marl / "og_marl/configs/config.yaml").read_text())
    assert {"system": "iddpg_bc"} in config["defaults"] and {"env": "mamujoco"} in config["defaults"]
    assert "callbacks" not in config["hydra"]
    assert not any("bandit" in path for path in committed)  # the plugin's env comes through its search path
    task = yaml.safe_load((fake_og_marl / "og_marl/configs/task/2halfcheetah.yaml").read_text())
    assert task == {
        "name": "2halfcheetah",
        "env": "mamujoco",
        "source": "og_marl",
        "env_name": "gymnasium_mamujoco",
        "scenario": "2halfcheetah",
        "dataset": "Replay",
    }
    assert (
        "download_and_unzip_vault('og_marl', 'gymnasium_mamujoco', '2halfcheetah')"
        in (fake_og_marl / "og_marl/configs/task/2halfcheetah.yaml").read_text()
    )
    assert "system" not in yaml.safe_load((fake_og_marl / "og_marl/configs/env/mamujoco.yaml").read_text())
    # The patch applies with git am onto the original main.
    git(fake_og_marl, "checkout", "-q", "-b", "replay", "main")
    git(fake_og_marl, "am", "-q", str(patch))
    assert git(fake_og_marl, "diff", "og-marl-run", "replay") == ""


def test_export_twice_is_idempotent(fake_og_marl):
    assert run_export(fake_og_marl).returncode == 0
    before = tree_state(fake_og_marl)
    again = run_export(fake_og_marl)
    assert again.returncode == 0 and "Nothing to do" in again.stdout
    assert tree_state(fake_og_marl) == before


def test_export_into_a_tree_that_is_not_og_marl_changes_nothing(tmp_path):
    repo = tmp_path / "other"
    (repo / "src").mkdir(parents=True)
    (repo / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "other")
    before = tree_state(repo)
    result = run_export(repo)
    assert result.returncode == 2 and "not an OG-MARL checkout" in result.stderr and "Traceback" not in result.stderr
    assert tree_state(repo) == before
    plain = tmp_path / "plain"
    plain.mkdir()
    result = run_export(plain)
    assert result.returncode == 2 and "not a git working tree" in result.stderr
    assert os.listdir(plain) == []


def test_export_refuses_uncommitted_changes_in_the_files_it_writes(fake_og_marl):
    with open(fake_og_marl / "pyproject.toml", "a") as handle:
        handle.write("# local edit\n")
    before = tree_state(fake_og_marl)
    result = run_export(fake_og_marl)
    assert result.returncode == 2 and "uncommitted changes" in result.stderr and "pyproject.toml" in result.stderr
    assert tree_state(fake_og_marl) == before
    # An untracked (even git-ignored) file where the export would write counts too.
    git(fake_og_marl, "checkout", "-q", "--", "pyproject.toml")
    (fake_og_marl / "og_marl/configs/env").mkdir(parents=True)
    (fake_og_marl / "og_marl/configs/env/bandit.yaml").write_text("mine: 1\n")
    before = tree_state(fake_og_marl)
    result = run_export(fake_og_marl)
    assert result.returncode == 2 and "og_marl/configs/env" in result.stderr
    assert tree_state(fake_og_marl) == before


def test_a_failed_export_leaves_the_target_as_it_was(fake_og_marl):
    hook = fake_og_marl / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'refusing: this tree cannot take a commit' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = tree_state(fake_og_marl)
    result = run_export(fake_og_marl)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "failed and was undone" in result.stderr and "refusing: this tree cannot take a commit" in result.stderr
    assert result.stderr.strip().count("\n") == 0  # one paragraph
    assert tree_state(fake_og_marl) == before  # no new folders, no commit, no branch, status clean
    assert git(fake_og_marl, "status", "--porcelain", "--untracked-files=all") == ""
    assert not (fake_og_marl / "og_marl" / "configs").exists() and not (fake_og_marl / "tests").exists()


def test_export_writes_the_pull_request_description(fake_og_marl, tmp_path):
    description = tmp_path / "pr.md"
    base = git(fake_og_marl, "rev-parse", "HEAD").strip()
    result = run_export(fake_og_marl, "--pr-description", str(description))
    assert result.returncode == 0, result.stderr
    text = description.read_text()
    for heading in ("## What it adds", "## How to test it", "## What it changes for existing users"):
        assert heading in text
    assert f"Onto `{base[:12]}`" in text and "pytest tests/test_run.py" in text
    changes = text.split("## What it changes for existing users", 1)[1]
    assert changes.strip().startswith("Nothing.") and "`pyproject.toml`" in changes
    assert "`og_marl/run.py`" in text and "`tests/test_run.py`" in text
    assert not [name for name in PLUGIN_NAMES if name in text.lower()]


def module_level_undefined_names(source: str) -> set:
    """Names a module reads that nothing in it defines (a missing import or helper)."""
    tree = ast.parse(source)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            defined.add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return used - defined


def test_exported_runner_is_derived_and_self_contained():
    source = upstream_export.runner_source()
    compile(source, "og_marl/run.py", "exec")
    named = [line for line in source.splitlines() if any(name in line.lower() for name in PLUGIN_NAMES)]
    assert named == [], "the exported runner must not name the plugin"
    assert module_level_undefined_names(source) == set()
    # Derived, not hand-kept: the plugin's runner functions are in it verbatim.
    import inspect

    from og_marl_omsd.runner import naming
    from og_marl_omsd.runner import run as plugin_run
    from og_marl_omsd.upstream import og_marl_run as runner

    functions = (plugin_run.system_parameters, runner.run_offline_system, runner.run_registered, naming.with_settings)
    for function in functions:
        plugin_source = inspect.getsource(function).replace("og_marl_omsd.runner.run", "og_marl.run")
        assert plugin_source.replace("og_marl_omsd.run", "og_marl.run") in source
    assert "from og_marl.replay_buffers import FlashbaxReplayBuffer" in source


def test_og_marl_system_without_og_marl_exits_2_naming_og_marl(tmp_path, monkeypatch):
    from og_marl_omsd.runner.run import run
    from og_marl_omsd.support.errors import UserError

    from conftest import run_config

    monkeypatch.setenv("OG_MARL_OMSD_HOST", "standalone")
    monkeypatch.chdir(tmp_path)
    cfg = run_config("system=iddpg_bc", "env=mamujoco", f"runs_root={tmp_path / 'runs'}")
    with pytest.raises(UserError, match=r"OG-MARL.*git clone https://github.com/instadeepai/og-marl.*pip install"):
        run(cfg)
    assert not os.path.exists(tmp_path / "runs")


def test_og_marl_systems_take_the_plugins_dataset_settings(tmp_path, monkeypatch):
    """``task.vault_config`` (here the quick one), ``vault_dir`` and ``dataset=`` reach OG-MARL's
    systems through the runner, and through ``og_marl.run``'s dataset source."""
    from og_marl_omsd.datasets.vaults import VaultLocation, write_dataset
    from og_marl_omsd.environments.mamujoco import make_mamujoco
    from og_marl_omsd.runner import registry
    from og_marl_omsd.runner.run import dataset_source, run

    from conftest import run_config

    vault_dir = tmp_path / "vaults"
    environment = make_mamujoco("2halfcheetah", seed=0)
    steps, agents = 64, len(environment.agents)
    ends = np.zeros((steps, agents), "float32")
    ends[31::32] = 1.0
    random = np.random.default_rng(0)
    experience = {
        "observations": random.normal(size=(steps, agents, 12)).astype("float32"),
        "actions": random.uniform(-1, 1, size=(steps, agents, 3)).astype("float32"),
        "rewards": random.normal(size=(steps, agents)).astype("float32"),
        "terminals": np.zeros((steps, agents), "float32"),
        "truncations": ends,
        "infos": {"state": random.normal(size=(steps, 17)).astype("float32")},
    }
    quick = VaultLocation("og_marl_omsd_quick", "gymnasium_mamujoco", "2halfcheetah", str(vault_dir))
    write_dataset(quick, "Expert", experience)  # only the quick vault exists, not the default one
    overrides = ["env=mamujoco", "task=2halfcheetah", "dataset=Expert", f"vault_dir={vault_dir}"]
    cfg = run_config("system=iddpg_bc", *overrides, "task.vault_config=2halfcheetah-quick")
    assert dataset_source(cfg, "Expert") == ("og_marl_omsd_quick", "gymnasium_mamujoco", "2halfcheetah", str(vault_dir))
    og_marl_task = run_config("system=iddpg_bc", *overrides, "~task.vault_config")
    assert dataset_source(og_marl_task, "Expert") is None  # not the plugin's: og_marl.run reads OG-MARL's layout
    system_class = _plain_system_class()
    monkeypatch.setattr(registry, "load_system", lambda name: system_class)
    results = run(
        run_config(
            "system=iddpg_bc",
            *overrides,
            "task.vault_config=2halfcheetah-quick",
            "training_steps=2",
            "evaluation_every=2",
            "num_eval_episodes=1",
            "replay.batch_size=4",
            f"runs_root={tmp_path / 'runs'}",
        )
    )
    assert results["dataset"] == "Expert" and system_class.built[-1].batches == [(4, 2, 2, 3)] * 2
    # Without task.vault_config the task is read where OG-MARL keeps it, and the error says where.
    from og_marl_omsd.support.errors import UserError

    missing = os.path.join(str(vault_dir), "og_marl_omsd", "gymnasium_mamujoco", "2halfcheetah.vlt", "Expert")
    with pytest.raises(UserError, match=re.escape(missing)):
        run(run_config("system=iddpg_bc", *overrides, "~task.vault_config", f"runs_root={tmp_path / 'runs2'}"))


def test_og_marl_system_configs_come_from_its_yaml(fake_og_marl):
    config = system_config("omar", str(fake_og_marl / "og_marl"))
    assert config["system"]["learning_rate"] == pytest.approx(3e-4)
    assert config["replay"] == {"sequence_length": 20, "batch_size": 7}


# ---------------------------------------------------------------- against the real OG-MARL

OG_MARL_SOURCE = os.environ.get("OG_MARL_SOURCE")


def venv_with(tmp_path, name, *projects):
    """A venv that sees this interpreter's installed packages except this plugin and OG-MARL (linked
    into a folder of its own, so their .pth files and metadata stay out), with ``projects`` installed
    (editable, --no-deps)."""
    linked = tmp_path / f"{name}-site"
    linked.mkdir()
    for site in (path for path in sys.path if path.endswith("site-packages") and os.path.isdir(path)):
        for entry in os.listdir(site):
            if entry.startswith(("og_marl", "og-marl", "__editable__", "_og_marl")) or entry.endswith(".pth"):
                continue
            if not (linked / entry).exists():
                (linked / entry).symlink_to(os.path.join(site, entry))
    venv = tmp_path / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "zz_parent.pth").write_text(str(linked) + "\n")
    python = str(venv / "bin" / "python")
    for project in projects:
        subprocess.run(
            [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(project)], check=True
        )
    return python


@pytest.mark.skipif(
    not OG_MARL_SOURCE,
    reason="set OG_MARL_SOURCE=<a complete OG-MARL git checkout> to export into a clone of it and run "
    "og_marl.run for real (never in CI)",
)
@pytest.mark.slow
def test_og_marl_run_after_export_works_without_the_plugin_and_runs_omsd_with_it(tmp_path):
    checkout = tmp_path / "og-marl"
    subprocess.run(["git", "clone", "-q", OG_MARL_SOURCE, str(checkout)], check=True)
    # The export applies to this snapshot, once.
    assert run_export(checkout, "--pr-description", str(tmp_path / "pr.md")).returncode == 0
    assert run_export(checkout).stdout.startswith("Nothing to do")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "OG_MARL_OMSD_HOST")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    # Without the plugin: OG-MARL's own tests of og_marl.run pass.
    python = venv_with(tmp_path, "og-marl-only", checkout)
    absent = subprocess.run(
        [python, "-c", "import og_marl_omsd"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert absent.returncode != 0 and "No module named 'og_marl_omsd'" in absent.stderr
    tests = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_run.py"],
        cwd=checkout,
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    print(tests.stdout.strip().splitlines()[-1])
    # With the plugin: its systems and datasets come through entry points and its search path.
    python = venv_with(tmp_path, "og-marl-and-plugin", checkout, REPO_ROOT)
    work = tmp_path / "work"
    work.mkdir()
    common = [
        "env=mamujoco",
        "task=2halfcheetah",
        "dataset=Medium",
        "+task.vault_config=2halfcheetah-quick",
        f"vault_dir={tmp_path / 'vaults'}",
        "training_steps=20",
        "evaluation_every=10",
        "num_eval_episodes=1",
    ]
    for system, extra in (("omsd", ["system.critic_steps=20", "system.behaviour_steps=20"]), ("iddpg_bc", [])):
        result = subprocess.run(
            [python, "-m", "og_marl.run", f"system={system}", *common, *extra],
            cwd=work,
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        final = [line for line in result.stdout.splitlines() if line.startswith("Final mean return")]
        # The quick vault is named in the summary ("on vault config 2halfcheetah-quick (quick data ...)").
        summary = re.search(rf"results: {system} 2halfcheetah/Medium (.*) seed 0$", final[0]) if final else None
        assert summary and "2halfcheetah-quick" in summary.group(1), result.stdout[-3000:]
        assert "(host: og_marl)" in result.stdout
        print(final[0])


# ---------------------------------------------------------------- systems without pretraining


def _plain_system_class():
    """A BaseOfflineSystem the way OG-MARL's are: (environment, logger, **hyperparameters), no pretrain."""
    import numpy as np

    from og_marl_omsd import host

    class ConstantActions(host.BaseOfflineSystem):
        built: list = []  # every instance, for the test to look at

        def __init__(self, environment, logger, action: float = 0.5, learning_rate: float = 1e-3):
            super().__init__(environment, logger)
            self.action, self.batches = action, []
            self.built.append(self)

        def select_actions(self, observations, legal_actions=None):
            return {agent: np.full((self.environment.num_actions,), self.action, "float32") for agent in self.agents}

        def train_step(self, experience):
            self.batches.append(experience["actions"].shape)
            return {"loss": 0.0}

    return ConstantActions


def test_a_system_without_pretraining_runs_on_the_vault_with_the_runner_evaluation(
    tmp_path, small_vault_dir, monkeypatch
):
    import json

    from og_marl_omsd.runner import registry
    from og_marl_omsd.runner.run import run, vault_of_task
    from og_marl_omsd.support.provenance import collect
    from og_marl_omsd.upstream import og_marl_run as runner

    from conftest import run_config

    system_class = _plain_system_class()
    built = system_class.built
    cfg = run_config(
        "system=iddpg_bc",
        "env=bandit",
        "training_steps=6",
        "evaluation_every=3",
        "num_eval_episodes=2",
        "replay.sequence_length=2",
        "replay.batch_size=8",
        f"vault_dir={small_vault_dir}",
        f"runs_root={tmp_path / 'runs'}",
        "+system.action=1.0",
    )
    monkeypatch.setattr(registry, "load_system", lambda name: system_class)  # the plugin's runner, as for OG-MARL's
    results = run(cfg)
    # The env preset's score-regularised keys (beta, critic_steps, ...) were left out, the given one kept.
    assert built[0].action == 1.0 and built[0].batches[0] == (8, 2, 2, 1)
    # Evaluations at steps 0 and 3, then the final one (10x episodes) at step 6; bandit reward a1 * a2 = 1.
    assert [record["training_steps"] for record in results["evaluation_curve"]] == [0, 3, 6]
    assert results["final_evaluation"]["mean_episode_return"] == 1.0
    run_dir = tmp_path / "runs" / "iddpg_bc"
    stored = json.loads(next(run_dir.rglob("results.json")).read_text())
    assert stored["stage_steps"] == {"training": 6}
    assert stored["provenance"]["git_commit"] == collect()["git_commit"]  # the commit, as for plugin systems
    # The same command again finds the finished run.
    assert runner.run_offline_system(cfg, system_class, prepare_vault=vault_of_task) == stored


def test_a_command_line_key_the_system_does_not_take_is_an_error(tmp_path, small_vault_dir, monkeypatch):
    from og_marl_omsd.support.errors import UserError
    from og_marl_omsd.upstream import og_marl_run as runner

    from conftest import run_config

    monkeypatch.setattr(runner, "command_line_system_keys", lambda: {"beta"})
    cfg = run_config("system=iddpg_bc", "env=bandit", f"vault_dir={small_vault_dir}", f"runs_root={tmp_path / 'runs'}")
    with pytest.raises(UserError, match=r"unknown parameter system\.beta.*action, learning_rate"):
        runner.run_offline_system(cfg, _plain_system_class())
    assert not (tmp_path / "runs").exists()


def test_unwritable_patch_path_is_refused_before_any_commit_or_branch_switch(fake_og_marl, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    before = tree_state(fake_og_marl)
    for patch in (blocker / "og-marl-run.patch", tmp_path):  # under a file; a directory
        result = run_export(fake_og_marl, "--patch", str(patch))
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("Error: cannot write the patch file") and "Traceback" not in result.stderr
        assert "nothing was exported" in result.stderr
        assert tree_state(fake_og_marl) == before  # no commit, no branch, same files


def test_a_finished_og_marl_system_run_on_a_changed_dataset_is_refused(tmp_path, small_vault_dir, monkeypatch):
    import shutil

    from og_marl_omsd.datasets.vaults import write_dataset
    from og_marl_omsd.environments.bandit import generate_bandit_experience
    from og_marl_omsd.runner import registry
    from og_marl_omsd.runner.run import run
    from og_marl_omsd.support.errors import UserError

    from conftest import bandit_location, run_config

    vaults = tmp_path / "vaults"
    shutil.copytree(small_vault_dir, vaults)
    cfg = run_config(
        "system=iddpg_bc",
        "env=bandit",
        "training_steps=2",
        "evaluation_every=2",
        "num_eval_episodes=1",
        "replay.batch_size=8",
        f"vault_dir={vaults}",
        f"runs_root={tmp_path / 'runs'}",
    )
    monkeypatch.setattr(registry, "load_system", lambda name: _plain_system_class())
    first = run(cfg)
    (record,) = (tmp_path / "runs").rglob("dataset.json")  # recorded before it trained
    assert run(cfg) == first  # unchanged data: the finished run is found again
    location = bandit_location(str(vaults))
    shutil.rmtree(location.dataset_path("GMM"))
    write_dataset(location, "GMM", generate_bandit_experience(3000, seed=5))
    with pytest.raises(UserError, match=r"changed since the run in .* was made.*Its results belong to the old data"):
        run(cfg)
