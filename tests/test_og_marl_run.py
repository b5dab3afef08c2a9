"""og_marl_omsd.upstream.og_marl_run: the one module exported whole as OG-MARL's og_marl/run.py, and
the one home of each definition it shares with the rest of the plugin."""

from __future__ import annotations

import ast
import os
import shutil

import pytest

from og_marl_omsd.upstream import export, og_marl_run

MODULE_PATH = og_marl_run.__file__
PACKAGE_DIR = os.path.dirname(os.path.dirname(MODULE_PATH))


def module_lines():
    with open(MODULE_PATH) as handle:
        return handle.read().splitlines()


def host_block_span(lines):
    """``(first, last)`` line indexes of the HOST block, its marker lines included."""
    (begin,) = [index for index, line in enumerate(lines) if line.startswith("# HOST BEGIN")]
    (end,) = [index for index, line in enumerate(lines) if line.startswith("# HOST END")]
    return begin, end


def renamed(text):
    for old, new in export.RENAMES:
        text = text.replace(old, new)
    return text


def test_the_export_is_the_module_whole_with_only_the_documented_changes():
    lines = module_lines()
    begin, end = host_block_span(lines)
    header = [line for line in lines[:begin] if line.startswith("#")]
    assert header and lines[: len(header)] == header  # its first lines: the comment that says so
    assert "copied WHOLE into OG-MARL as og_marl/run.py" in lines[0]
    docstring = len(header)
    assert lines[docstring].startswith('"""')
    # 1. the opening comment left out, 2. the HOST block swapped, 3. the renames: nothing else.
    expected = lines[docstring:begin] + export.OG_MARL_HOST.rstrip("\n").splitlines() + lines[end + 1 :]
    assert export.runner_source() == renamed("\n".join(expected) + "\n")
    # The module's own lines outside the header and the HOST block are all there, in order.
    exported = export.runner_source().splitlines()
    ours = [renamed(line) for line in lines[docstring:begin] + lines[end + 1 :]]
    assert exported[: begin - docstring] == ours[: begin - docstring]
    assert exported[len(exported) - (len(lines) - end - 1) :] == ours[begin - docstring :]


def test_the_plugin_is_imported_only_in_the_host_block():
    lines = module_lines()
    begin, end = host_block_span(lines)
    outside = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        if any(module.startswith("og_marl") for module in modules) and not begin < node.lineno - 1 < end:
            outside.append((node.lineno, modules))
    assert outside == []
    # Outside the opening comment and the HOST block, and after the renames, nothing names the plugin.
    header = next(index for index, line in enumerate(lines) if not line.startswith("#"))
    body = lines[header:begin] + lines[end + 1 :]
    assert [line for line in body if "omsd" in renamed(line).lower()] == []


def top_level_names(path):
    names = set()
    with open(path) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def host_block_names():
    lines = module_lines()
    begin, end = host_block_span(lines)
    tree = ast.parse("\n".join(lines[begin : end + 1]))
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_each_shared_definition_lives_only_here():
    # Every command has its own main; the HOST block's functions are the seam (they delegate to
    # the plugin at call time here, and are OG-MARL's own in the export), not shared definitions.
    host = host_block_names()
    assert "identity_neutral" in host and "host_modules" in host
    ours = top_level_names(MODULE_PATH) - {"main"} - host
    defined_twice = {}
    for directory, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            path = os.path.join(directory, name)
            if name.endswith(".py") and os.path.abspath(path) != os.path.abspath(MODULE_PATH):
                common = ours & top_level_names(path)
                if common:
                    defined_twice[os.path.relpath(path, PACKAGE_DIR)] = sorted(common)
    assert defined_twice == {}


def test_the_old_homes_hand_out_the_same_objects():
    from og_marl_omsd.runner import logger, naming, registry, validation
    from og_marl_omsd.runner import run as runner
    from og_marl_omsd.support import errors, files

    assert errors.UserError is og_marl_run.UserError  # one class: `except UserError` catches every raise
    assert files.write_json is og_marl_run.write_json and files.atomic_file is og_marl_run.atomic_file
    assert validation.RUN_RULES is og_marl_run.RUN_RULES
    assert runner.default_run_dir is og_marl_run.default_run_dir
    assert naming.with_settings is og_marl_run.with_settings
    assert logger.MarlEvalWriter is og_marl_run.MarlEvalWriter
    assert registry.UnknownSystemError is og_marl_run.UnknownSystemError
    with pytest.raises(errors.UserError):
        og_marl_run.check_dataset_name("../elsewhere")


def test_a_module_without_its_host_block_is_not_exported(tmp_path, monkeypatch):
    real = export.runner_source()
    plugin = tmp_path / "og_marl_omsd"
    (plugin / "upstream").mkdir(parents=True)
    text = "\n".join(line for line in module_lines() if not line.startswith("# HOST END"))
    (plugin / "upstream" / "og_marl_run.py").write_text(text)
    monkeypatch.setattr(export, "PLUGIN_DIR", str(plugin))
    with pytest.raises(export.ExportError, match=r"one '# HOST BEGIN' \.\.\. '# HOST END' block"):
        export.runner_source()
    shutil.copy(MODULE_PATH, plugin / "upstream" / "og_marl_run.py")
    assert export.runner_source() == real  # the module itself, in the same place, exports as before
