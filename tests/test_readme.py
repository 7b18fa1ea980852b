"""Every ```python block of README.md runs as pasted, on its own.

Each block is written to a file and run by a fresh interpreter in an empty
temporary directory (so a block cannot lean on names, imports or files of
another), with a time limit; it must exit 0 and print something.  A block
that imports an optional package (scikit-learn, PyTorch, threadpoolctl) is
skipped when that package is missing, except where ``FASTDL_REQUIRE_ORACLES``
names it (CI): there the missing package is a failure.  Shell blocks are not
run.  Outside a source checkout (the installed-wheel test run copies only
``tests/``) there is no README and the tests skip.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastdl

README = Path(__file__).resolve().parents[1] / "README.md"

#: Seconds one block may take (the slowest compiles compile_step's step once).
TIMEOUT = 300

#: Import roots a block may need that fastdl does not install; a module of
#: fastdl that needs one counts as needing it.
OPTIONAL = {"sklearn": "sklearn", "torch": "torch", "threadpoolctl": "threadpoolctl",
            "fastdl.torch": "torch"}

_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


def python_blocks(text):
    """``[(line, code)]`` of the ```python fenced blocks of a markdown text (1-based lines)."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(2))
            for m in _FENCE.finditer(text) if m.group(1) == "python"]


def imported_modules(code):
    """Every module a block imports (``import a.b`` gives "a" and "a.b")."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return names


def missing_optional(code):
    """The optional packages a block needs that are not installed, sorted."""
    needed = {OPTIONAL[m] for m in imported_modules(code) if m in OPTIONAL}
    return sorted(p for p in needed if importlib.util.find_spec(p) is None)


def _params():
    if not README.is_file():
        return [pytest.param(0, "", marks=pytest.mark.skip(reason="no README.md "
                                                            "(not a source checkout)"))]
    return [pytest.param(line, code, id=f"line{line}")
            for line, code in python_blocks(README.read_text(encoding="utf-8"))]


def test_parser_finds_python_blocks_only():
    text = "a\n```python\nprint(1)\n```\n```bash\nls\n```\n\n```python\nx = 2\n```\n"
    assert python_blocks(text) == [(2, "print(1)\n"), (9, "x = 2\n")]


def test_optional_imports_are_seen():
    code = "import numpy as np\nfrom sklearn.datasets import load_digits\nimport fastdl.torch\n"
    assert {"numpy", "sklearn", "sklearn.datasets", "fastdl", "fastdl.torch"} <= \
        imported_modules(code)


@pytest.mark.skipif(not README.is_file(), reason="no README.md (not a source checkout)")
def test_readme_has_python_blocks():
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 3


def skip_unless_installed(line, code):
    """Skip a block whose optional packages are missing; fail if CI requires them."""
    missing = missing_optional(code)
    if missing:
        required = set(filter(None, os.environ.get("FASTDL_REQUIRE_ORACLES", "").split(",")))
        if required & set(missing):
            pytest.fail(f"README block at line {line} needs {missing}, which "
                        f"FASTDL_REQUIRE_ORACLES requires and is not installed")
        pytest.skip(f"README block at line {line} needs {', '.join(missing)}")


@pytest.mark.parametrize("required, outcome", [("", pytest.skip.Exception),
                                               ("torch,sklearn", pytest.fail.Exception)])
def test_missing_optional_package_skips_unless_required(required, outcome, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real(name, *a))
    monkeypatch.setenv("FASTDL_REQUIRE_ORACLES", required)
    with pytest.raises(outcome, match="sklearn"):
        skip_unless_installed(1, "from sklearn.datasets import load_digits\n")
    skip_unless_installed(1, "import numpy\n")  # nothing optional: runs


@pytest.mark.parametrize("line, code", _params())
def test_readme_block_runs_as_pasted(line, code, tmp_path):
    skip_unless_installed(line, code)
    script = tmp_path / f"readme_line{line}.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ)
    # The fastdl under test, whatever the directory the block runs in.
    root = str(Path(fastdl.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"README block at line {line} ran over {TIMEOUT} s:\n{exc.stdout or ''}")
    assert proc.returncode == 0, (
        f"README block at line {line} failed (exit {proc.returncode}):\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    assert proc.stdout.strip(), f"README block at line {line} printed nothing"
