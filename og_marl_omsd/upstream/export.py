"""``python -m og_marl_omsd.upstream export <og-marl checkout>``: OG-MARL's ``og_marl.run``, as a commit.

What it writes into the OG-MARL working tree (one commit on a new branch, default
``og-marl-run``; ``--patch FILE`` also writes it as a patch ``git am`` applies):

- ``og_marl/run.py``: the runner, :mod:`og_marl_omsd.upstream.og_marl_run` copied whole (the module the
  plugin's own runner imports its schema, checks, run directories, marl-eval JSON, registry and
  runner of systems without pretraining from), with OG-MARL's own modules in its HOST block in
  place of the plugin's host (environments other distributions register in ``og_marl.environments``
  first) and the plugin's names renamed (:data:`RENAMES`);
- ``og_marl/configs/``: ``config.yaml``, ``env/`` and ``task/`` (this plugin's, so the
  grammar is the same) and ``system/<name>.yaml`` for OG-MARL's own systems, built from their
  YAML defaults in the target tree;
- ``pyproject.toml``: OG-MARL's systems in the ``og_marl.systems`` entry-point group and the
  configs as package data (one marked block, replaced on a new export);
- ``tests/test_run.py``: the runner's tests.

Exporting again with nothing changed does nothing. A tree that is not an OG-MARL checkout,
or one with uncommitted changes in these files, is an error that changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from og_marl_omsd.runner.validation import check_writable_directory
from og_marl_omsd.support.errors import UserError
from og_marl_omsd.upstream.og_marl_systems import OFFLINE_DIR, OG_MARL_SYSTEMS, system_config

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BRANCH = "og-marl-run"
BLOCK_BEGIN = "# >>> og_marl.run: systems registry and runner configs (one generated block, replaced as a whole) >>>"
OLD_BLOCK_BEGINS = ("# >>> og_marl.run: systems registry and runner configs (written by og-marl-omsd's export) >>>",)
BLOCK_END = "# <<< og_marl.run <<<"

# og_marl/run.py is this module, copied whole (its first lines say so), with the HOST block swapped and the renames.
RUNNER_MODULE = "upstream/og_marl_run.py"
HOST_BEGIN, HOST_END = "# HOST BEGIN", "# HOST END"

OG_MARL_HOST = '''HOST_NAME = "og_marl"


def identity_neutral(name: str, value: Any) -> bool:
    """Whether a system hyperparameter at ``value`` leaves run directories named as before it
    existed: none of OG-MARL's (its systems' parameters all name their runs)."""
    return False


def host_modules() -> Any:
    """OG-MARL's environments, replay buffer and loggers; an environment another distribution
    registers under the same name in ``og_marl.environments`` comes first."""
    from og_marl.environments import get_environment as og_marl_get_environment
    from og_marl.loggers import TerminalLogger, WandbLogger
    from og_marl.replay_buffers import FlashbaxReplayBuffer
    from types import SimpleNamespace

    def get_environment(source: str, env_name: str, scenario: str, seed: int = 42) -> Any:
        for entry in entry_points(group="og_marl.environments"):
            if entry.name == env_name:
                return entry.load()(scenario, seed=seed)
        return og_marl_get_environment(source, env_name, scenario, seed=seed)

    return SimpleNamespace(HOST="og_marl", get_environment=get_environment,
                           FlashbaxReplayBuffer=FlashbaxReplayBuffer, TerminalLogger=TerminalLogger,
                           WandbLogger=WandbLogger)
'''

# Plain-text changes to this plugin's config files and runner code for OG-MARL's tree.
RENAMES = [
    ("og_marl_omsd.runner.run", "og_marl.run"),
    ("og_marl_omsd.run", "og_marl.run"),
    ("og_marl_omsd.configs", "og_marl.configs"),
    ("og_marl_omsd/configs", "og_marl/configs"),
    ("og-marl-omsd", "og-marl"),
]


COMMIT_MESSAGE = """Add og_marl.run: one runner for every offline system, found through og_marl.systems entry points

- og_marl/run.py: python -m og_marl.run system=<name> env=<env> task=<task> dataset=<uid> seed=<n>
  training_steps=<n> vault_dir=<dir> system.<param>=<value>; systems are the og_marl.systems entry
  points of every installed distribution, their configs found here or through hydra search-path plugins
- pyproject.toml: iddpg_bc, maddpg_cql, omar and continuous_bc registered; configs as package data
- og_marl/configs/: run config (default system iddpg_bc), env and task groups for MaMuJoCo on
  OG-MARL's own datasets (og_marl/gymnasium_mamujoco vaults), system configs from the systems' YAML
- tests/test_run.py: the runner's tests, on a small vault in OG-MARL's layout

Nothing existing changes: the baseline scripts and their configs are untouched."""


class ExportError(Exception):
    """The target is not fit for an export: one paragraph, exit code 2, nothing changed."""


def _renamed(text: str) -> str:
    for old, new in RENAMES:
        text = text.replace(old, new)
    return text


def runner_source() -> str:
    """``og_marl/run.py``: :mod:`og_marl_omsd.upstream.og_marl_run` whole, less its opening comment lines
    (up to the docstring), with OG-MARL's HOST block (:data:`OG_MARL_HOST`) in place of the plugin's and
    the :data:`RENAMES`."""
    path = os.path.join(PLUGIN_DIR, RUNNER_MODULE)
    with open(path) as handle:
        lines = handle.read().splitlines()
    first = next((index for index, line in enumerate(lines) if not line.startswith("#")), len(lines))
    begins = [index for index, line in enumerate(lines) if line.startswith(HOST_BEGIN)]
    ends = [index for index, line in enumerate(lines) if line.startswith(HOST_END)]
    if len(begins) != 1 or len(ends) != 1 or not first < begins[0] < ends[0]:
        raise ExportError(
            f"The plugin's {path} must hold one {HOST_BEGIN!r} ... {HOST_END!r} block after its docstring "
            f"(found {len(begins)} and {len(ends)}): update it or og_marl_omsd/upstream/export.py (runner_source)."
        )
    kept = lines[first : begins[0]] + OG_MARL_HOST.rstrip("\n").splitlines() + lines[ends[0] + 1 :]
    return _renamed("\n".join(kept) + "\n")


EXPORTED_ENV = "mamujoco"  # the plugin's env whose tasks run on OG-MARL's own datasets
OG_MARL_DATASET_SOURCE = "og_marl"  # OG-MARL's own datasets (download_and_unzip_vault's first argument)
OG_MARL_DEFAULT_DATASET = "Replay"  # what OG-MARL publishes for every gymnasium_mamujoco scenario
DEFAULT_SYSTEM = "iddpg_bc"  # OG-MARL's own: the exported config needs nothing else installed


def _replace_line(text: str, old: str, new: str, what: str) -> str:
    lines = text.splitlines()
    if old not in lines:
        raise ExportError(
            f"The plugin's configs/{what} no longer has the line {old!r} the export rewrites: update "
            "og_marl_omsd/upstream/export.py (config_files)."
        )
    return "\n".join(new if line == old else line for line in lines) + "\n"


def _without_block(text: str, key_line: str) -> str:
    """``text`` less the YAML block that starts at the line ``key_line`` (and its deeper lines)."""
    lines, kept, skipping = text.splitlines(), [], None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if skipping is not None and line.strip() and indent <= skipping:
            skipping = None
        if skipping is None and line.rstrip() == key_line:
            skipping = indent
            continue
        if skipping is None:
            kept.append(line)
    return "\n".join(kept) + "\n"


def run_config_text() -> str:
    """``og_marl/configs/config.yaml``: the plugin's run config with OG-MARL's own default system and
    env, and hydra's plain sweeps (no callback: nothing outside OG-MARL is named)."""
    with open(os.path.join(PLUGIN_DIR, "configs", "config.yaml")) as handle:
        text = handle.read()
    text = _replace_line(text, "  - system: omsd", f"  - system: {DEFAULT_SYSTEM}", "config.yaml")
    text = _replace_line(text, "  - env: bandit", f"  - env: {EXPORTED_ENV}", "config.yaml")
    text = _without_block(text, "  callbacks:")
    return _renamed(text)


def env_config_text() -> str:
    """``og_marl/configs/env/mamujoco.yaml``: the plugin's env preset less its systems' sizes."""
    import yaml

    with open(os.path.join(PLUGIN_DIR, "configs", "env", f"{EXPORTED_ENV}.yaml")) as handle:
        preset = yaml.safe_load(handle)
    preset.pop("system", None)
    return (
        "# @package _global_\n"
        '# Multi-agent MuJoCo through gymnasium-robotics (OG-MARL\'s "gymnasium_mamujoco" environment).\n'
        "# Run budgets sized for a CPU; full runs raise training_steps (training_steps=500000 as OG-MARL's scripts).\n"
        + yaml.safe_dump(preset, sort_keys=False)
    )


def task_config_text(name: str, task: Dict[str, Any], description: str) -> str:
    """A task on OG-MARL's own dataset (``og_marl/<env_name>/<scenario>.vlt``), saying where it is read
    from and how to download it."""
    env_name, scenario = task["env_name"], task["scenario"]
    return (
        f"# {description}. OG-MARL's dataset: {OG_MARL_DATASET_SOURCE}/{env_name}/{scenario}.vlt/"
        f"{OG_MARL_DEFAULT_DATASET}, read from\n"
        f"#   <vault_dir>/{OG_MARL_DATASET_SOURCE}/{env_name}/{scenario}.vlt/<dataset>/ "
        "(vault_dir=vaults by default).\n"
        "# Download it there with\n"
        '#   python -c "from og_marl.vault_utils.download_vault import download_and_unzip_vault; '
        f"download_and_unzip_vault('{OG_MARL_DATASET_SOURCE}', '{env_name}', '{scenario}')\"\n"
        "# or place a vault of your own there and name it with dataset=<its uid>.\n"
        f"name: {name}\n"
        f"env: {task['env']}\n"
        f"source: {OG_MARL_DATASET_SOURCE}\n"
        f"env_name: {env_name}\n"
        f"scenario: {scenario}\n"
        f"dataset: {OG_MARL_DEFAULT_DATASET}\n"
    )


def config_files(target: str) -> Dict[str, str]:
    """``og_marl/configs/...``: the run config, the MaMuJoCo env and its tasks on OG-MARL's own
    datasets, and a system config for each of OG-MARL's systems from its YAML defaults in
    ``target``. Nothing in them names this plugin: its systems, envs and datasets come through
    entry points and its hydra search-path plugin when it is installed."""
    import yaml

    files: Dict[str, str] = {"og_marl/configs/__init__.py": "", "og_marl/configs/config.yaml": run_config_text()}
    files[f"og_marl/configs/env/{EXPORTED_ENV}.yaml"] = env_config_text()
    task_dir = os.path.join(PLUGIN_DIR, "configs", "task")
    for name in sorted(os.listdir(task_dir)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(task_dir, name)) as handle:
            text = handle.read()
        task = yaml.safe_load(text) or {}
        if name == f"{EXPORTED_ENV}.yaml":  # env=mamujoco without a task: an alias of one of them
            files[f"og_marl/configs/task/{name}"] = _renamed(text)
        elif task.get("env") == EXPORTED_ENV:
            first = text.splitlines()[0].lstrip("# ")
            description = first.split(". Datasets:")[0].rstrip(".")
            files[f"og_marl/configs/task/{name}"] = task_config_text(task["name"], task, description)
    package_dir = os.path.join(target, "og_marl")
    for name, system in OG_MARL_SYSTEMS.items():
        config = system_config(name, package_dir)
        header = (
            f"# @package _global_\n# {name}: OG-MARL's {system.class_name} ({system.description}), "
            f"og_marl/{OFFLINE_DIR}/{system.module}.py.\n# Values from its configs/{system.module}.yaml "
            "(replay: the sequence length it trains on, the buffer's default batch size).\n"
        )
        files[f"og_marl/configs/system/{name}.yaml"] = header + yaml.safe_dump(config, sort_keys=False)
    return files


def pyproject_text(current: str) -> str:
    """OG-MARL's ``pyproject.toml`` with the marked block (entry points, package data) in place."""
    begin = next((line for line in (BLOCK_BEGIN, *OLD_BLOCK_BEGINS) if line in current), None)
    if begin is not None:
        before, rest = current.split(begin, 1)
        if BLOCK_END not in rest:
            raise ExportError(
                f"pyproject.toml has the line {begin!r} but not {BLOCK_END!r}: restore it "
                "(git checkout pyproject.toml) and export again."
            )
        after = rest.split(BLOCK_END, 1)[1].lstrip("\n")
        current = before.rstrip("\n") + "\n" + (("\n" + after) if after else "")
    for table in ('[project.entry-points."og_marl.systems"]', "[tool.setuptools.package-data]"):
        if table in current:
            raise ExportError(
                f"pyproject.toml already has {table} outside the export's block; merge it by hand "
                "(the export would declare it twice)."
            )
    entries = "\n".join(f'{name} = "{system.entry_point}"' for name, system in OG_MARL_SYSTEMS.items())
    block = (
        f"{BLOCK_BEGIN}\n"
        '[project.entry-points."og_marl.systems"]\n'
        f"{entries}\n\n"
        "[tool.setuptools.package-data]\n"
        '"og_marl.configs" = ["*.yaml", "*/*.yaml"]\n'
        f"{BLOCK_END}\n"
    )
    return current.rstrip("\n") + "\n\n" + block


def planned_files(target: str) -> Dict[str, str]:
    """Every file the export writes (path relative to the checkout -> content)."""
    files = {"og_marl/run.py": runner_source()}
    files.update(config_files(target))
    with open(os.path.join(target, "pyproject.toml")) as handle:
        files["pyproject.toml"] = pyproject_text(handle.read())
    with open(os.path.join(PLUGIN_DIR, "upstream", "templates", "test_run.py.in")) as handle:
        files["tests/test_run.py"] = handle.read()
    return files


def _git(target: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["git", "-C", target, *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        output = " ".join((result.stderr.strip() or result.stdout.strip()).split())  # one paragraph
        raise ExportError(f"git {' '.join(args[:2])} failed in {target}: {output}")
    return result


def check_target(target: str) -> None:
    """An OG-MARL checkout's root (a git working tree holding OG-MARL's package and its systems)."""
    top = _git(target, "rev-parse", "--show-toplevel", check=False)
    if top.returncode != 0:
        raise ExportError(
            f"{target} is not a git working tree. Point the export at a clone of "
            "https://github.com/instadeepai/og-marl (git clone ... && export <that directory>)."
        )
    if os.path.realpath(top.stdout.strip()) != os.path.realpath(target):
        raise ExportError(f"{target} is inside the git tree {top.stdout.strip()}; give the checkout's root.")
    problems = []
    pyproject = os.path.join(target, "pyproject.toml")
    if not os.path.isfile(pyproject) or 'name = "og-marl"' not in open(pyproject).read():
        problems.append('pyproject.toml declaring name = "og-marl"')
    base = os.path.join(target, "og_marl", "baselines", "base.py")
    if not os.path.isfile(base) or "class BaseOfflineSystem" not in open(base).read():
        problems.append("og_marl/baselines/base.py with BaseOfflineSystem")
    for name, system in OG_MARL_SYSTEMS.items():
        source = os.path.join(target, "og_marl", OFFLINE_DIR, f"{system.module}.py")
        config = os.path.join(target, "og_marl", OFFLINE_DIR, "configs", f"{system.module}.yaml")
        if not os.path.isfile(source) or f"class {system.class_name}(" not in open(source).read():
            problems.append(f"og_marl/{OFFLINE_DIR}/{system.module}.py with {system.class_name} ({name})")
        elif not os.path.isfile(config):
            problems.append(f"og_marl/{OFFLINE_DIR}/configs/{system.module}.yaml ({name}'s defaults)")
    if problems:
        raise ExportError(
            f"{target} is not an OG-MARL checkout the export knows: it lacks {'; '.join(problems)}. "
            "Point it at a clone of https://github.com/instadeepai/og-marl (main). Nothing was changed."
        )


def new_directories(target: str, paths: Sequence[str]) -> List[str]:
    """The directories that writing ``paths`` into ``target`` would create, deepest first."""
    created = set()
    for path in paths:
        directory = os.path.dirname(path)
        while directory and not os.path.isdir(os.path.join(target, directory)):
            created.add(directory)
            directory = os.path.dirname(directory)
    return sorted(created, key=lambda directory: (-directory.count("/"), directory))


def _commit_files(target: str, files: Dict[str, str], created: bool) -> None:
    """Write ``files`` (path: text) into the checkout ``target`` and commit them."""
    for path, text in files.items():
        full = os.path.join(target, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as handle:
            handle.write(text)
    _git(target, "add", "--force", "--", *files)  # OG-MARL's .gitignore ignores every env/ directory
    identity = []
    if not _git(target, "config", "user.email", check=False).stdout.strip():
        identity = ["-c", "user.name=og_marl.run export", "-c", "user.email=og-marl-run@users.noreply.github.com"]
    message = COMMIT_MESSAGE if created else "og_marl.run: update\n\n" + COMMIT_MESSAGE
    _git(target, *identity, "commit", "-q", "-m", message, "--", *files)


def _undo_export(
    target: str,
    changed: List[str],
    added: List[str],
    directories: List[str],
    branches: Optional[Tuple[str, str]],
    head: str,
) -> None:
    """Put ``target`` back as it was: the files the export wrote, the directories it made (deepest
    first), the branch it created (``branches``: ``(the branch checked out before, the new one)``)
    and any commit it made (``head``: the commit checked out before)."""
    if _git(target, "rev-parse", "HEAD", check=False).stdout.strip() != head:
        _git(target, "reset", "-q", "--soft", head, check=False)
    _git(target, "reset", "-q", "--", *changed, check=False)
    for path in added:
        if os.path.lexists(os.path.join(target, path)):
            os.remove(os.path.join(target, path))
    modified = [path for path in changed if path not in added]
    if modified:
        _git(target, "checkout", "-q", head, "--", *modified, check=False)
    for directory in directories:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(target, directory))  # only if empty: never anything the user had
    if branches is not None:
        _git(target, "checkout", "-q", branches[0], check=False)
        _git(target, "branch", "-q", "-D", branches[1], check=False)


def export(target: str, branch: str = DEFAULT_BRANCH, patch: Optional[str] = None) -> Dict[str, Any]:
    """Write the contribution into ``target`` as one commit on ``branch``; returns what it did."""
    target = os.path.abspath(target)
    check_target(target)
    files = planned_files(target)
    paths = sorted(files)
    dirty = sorted(
        {
            line[3:]
            for line in _git(
                target, "status", "--porcelain", "--untracked-files=all", "--ignored=matching", "--", *paths
            ).stdout.splitlines()
            if line.strip()
        }
    )
    if dirty:
        raise ExportError(
            f"{target} has uncommitted changes in files the export writes: {', '.join(dirty)}. Commit "
            "or stash them (git stash -u) and export again. Nothing was changed."
        )
    head_branch = _git(target, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    changed = [
        path
        for path in paths
        if _git(target, "show", f"HEAD:{path}", check=False).stdout != files[path]
        or _git(target, "cat-file", "-e", f"HEAD:{path}", check=False).returncode != 0
    ]
    if not changed:
        commit = _git(target, "rev-parse", "HEAD").stdout.strip()
        return {"changed": [], "branch": head_branch, "commit": commit, "patch": None}
    if head_branch != branch and (
        _git(target, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False).returncode == 0
    ):
        raise ExportError(
            f"Branch {branch} already exists in {target} (an earlier export?). Check it out to "
            f"update it (git checkout {branch}), or pass --branch <new name>. Nothing was changed."
        )
    created = head_branch != branch
    head = _git(target, "rev-parse", "HEAD").stdout.strip()
    added = [path for path in changed if _git(target, "cat-file", "-e", f"HEAD:{path}", check=False).returncode != 0]
    directories = new_directories(target, changed)
    try:
        if created:
            _git(target, "checkout", "-q", "-b", branch)
        _commit_files(target, {path: files[path] for path in changed}, created)
    except BaseException as error:  # leave the tree as it was
        _undo_export(target, changed, added, directories, (head_branch, branch) if created else None, head)
        if isinstance(error, (ExportError, OSError)):
            raise ExportError(f"The export failed and was undone ({target} is as it was): {error}") from None
        raise
    commit = _git(target, "rev-parse", "HEAD").stdout.strip()
    if patch:
        with open(patch, "w") as handle:
            handle.write(_git(target, "format-patch", "-1", "--stdout", "HEAD").stdout)
    return {"changed": changed, "added": added, "branch": branch, "commit": commit, "patch": patch, "base": head}


def pull_request_description(result: Dict[str, Any], base: str) -> str:
    """The pull request's description (markdown): what it adds, how to test it, what it changes for
    existing users (nothing), from an :func:`export` result onto the OG-MARL commit ``base``."""
    added = [path for path in result["changed"] if path in result.get("added", [])]
    modified = [path for path in result["changed"] if path not in added]
    systems = ", ".join(f"`{name}`" for name in OG_MARL_SYSTEMS)
    lines = [
        "# Add `og_marl.run`: one runner for every offline system, found through entry points",
        "",
        f"Onto `{base[:12]}`. One commit, `{str(result['commit'])[:12]}`.",
        "",
        "## What it adds",
        "",
        "- `python -m og_marl.run system=<name> env=<env> task=<task> dataset=<uid> seed=<n> training_steps=<n> "
        "vault_dir=<dir> system.<param>=<value>`: one command for every offline system, with hydra configs "
        "(`og_marl/configs/`), checked settings (bad input is one paragraph and exit code 2: an unknown system lists "
        "the registered ones, a missing dataset says where it was looked for and how to download it), a run "
        "directory per configuration (`runs/<system>/<env>-<task>/<dataset>/seed<n>-<hash>/`) with `config.yaml`, "
        "`results.json` and marl-eval `metrics.json` (the task name carries the dataset, the algorithm name the "
        "settings given, each evaluation step every episode's return).",
        f"- A registry: the `og_marl.systems` entry-point group. OG-MARL's {systems} are declared in "
        "`pyproject.toml`, with configs built from their own YAML defaults. Any installed distribution adds a system "
        "with one entry point (and its configs through a hydra `SearchPathPlugin`), an environment through "
        "`og_marl.environments` and datasets through `og_marl.dataset_sources`; nothing in OG-MARL names them.",
        "- MaMuJoCo (`env=mamujoco`) tasks on OG-MARL's own datasets: `task=2halfcheetah` reads "
        f"`vaults/og_marl/gymnasium_mamujoco/2halfcheetah.vlt/{OG_MARL_DEFAULT_DATASET}` (as "
        "`download_and_unzip_vault` writes it).",
        "- `tests/test_run.py`: the registry, every system's config against its constructor, the errors, and "
        "`og_marl.run` training OG-MARL's systems on a small vault in OG-MARL's layout.",
        "",
        "Files added: " + ", ".join(f"`{path}`" for path in added) + ".",
        "",
        "## How to test it",
        "",
        "```bash",
        "pip install -e .   # registers the entry points (and ships the configs)",
        "pytest tests/test_run.py",
        'python -c "from og_marl.vault_utils.download_vault import download_and_unzip_vault; '
        "download_and_unzip_vault('og_marl', 'gymnasium_mamujoco', '2halfcheetah')\"",
        "python -m og_marl.run system=iddpg_bc env=mamujoco task=2halfcheetah training_steps=1000 evaluation_every=500",
        "python -m og_marl.run system.name=no_such_system   # exit code 2: lists the registered systems",
        "```",
        "",
        "## What it changes for existing users",
        "",
        "Nothing. The baseline scripts, their configs and every module are untouched; "
        + (
            "the only existing file it edits is "
            + ", ".join(f"`{path}`" for path in modified)
            + " (one marked block: the entry points and the configs as package data)."
            if modified
            else "it edits no existing file."
        )
        + " The default system is OG-MARL's own `"
        + DEFAULT_SYSTEM
        + "`; sweeps (`-m`) behave as hydra's do.",
        "",
    ]
    return "\n".join(lines)


def _patch_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be written as a file (probed without changing it), or None."""
    if os.path.isdir(path):
        return "it is a directory"
    try:
        check_writable_directory(os.path.dirname(os.path.abspath(path)), "patch directory", "--patch")
        if os.path.exists(path):
            with open(path, "r+"):
                pass
    except UserError as error:
        return str(error).split(": ", 1)[-1].split(". Choose", 1)[0]
    except OSError as error:
        return str(error.strerror or error)
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m og_marl_omsd.upstream", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("export", help="add og_marl.run and its registry to an OG-MARL checkout (a commit)")
    command.add_argument("target", help="the root of an OG-MARL git checkout")
    command.add_argument("--branch", default=DEFAULT_BRANCH, help=f"branch to commit on (default {DEFAULT_BRANCH})")
    command.add_argument("--patch", help="also write the commit as a patch file (git am applies it)")
    command.add_argument("--pr-description", help="also write the pull request's description (markdown) to this file")
    args = parser.parse_args(argv)
    if args.patch:  # checked before the export commits or switches branch
        problem = _patch_problem(args.patch)
        if problem:
            print(
                f"Error: cannot write the patch file {args.patch}: {problem}. Choose a writable --patch <file>; "
                "nothing was exported (no commit, no branch switch).",
                file=sys.stderr,
            )
            return 2
    try:
        result = export(args.target, args.branch, args.patch)
    except ExportError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    if not result["changed"]:
        print(
            f"Nothing to do: {args.target} already holds this export (branch {result['branch']}, "
            f"commit {str(result['commit'])[:12]})."
        )
        return 0
    print(f"Exported to {args.target}: commit {str(result['commit'])[:12]} on branch {result['branch']}")
    for path in result["changed"]:
        print(f"  {'added   ' if path in result['added'] else 'modified'} {path}")
    if result["patch"]:
        print(f"Patch: {result['patch']} (git am {result['patch']})")
    if args.pr_description:
        with open(args.pr_description, "w") as handle:
            handle.write(pull_request_description(result, result["base"]))
        print(f"Pull request description: {args.pr_description}")
    print(
        "Next: pip install -e <og-marl> and run its tests (pytest tests/test_run.py); with this plugin installed too "
        "(pip install -e <og-marl-omsd>), python -m og_marl.run system=omsd env=mamujoco task=2halfcheetah runs OMSD. "
        f"Open the pull request with git push <your fork> {result['branch']} and GitHub's 'Compare & pull request' "
        "against instadeepai/og-marl main."
    )
    return 0
