"""The documentation builds: Sphinx, warnings as errors, every public name documented.

``docs/`` holds the Sphinx sources: the contract ``docs/API.md`` and the
reference built from the docstrings (autodoc + napoleon; the functional
page is generated from the op table).  The build runs in a fresh
interpreter into a temporary directory with ``-W`` and ``nitpicky`` (so an
unresolved reference, a docstring that is not valid reST or a module that
fails to import fails it), then every name of ``fastdl.__all__`` and of the
layer, loss, optimizer and data modules must have its entry.  Skipped when
Sphinx or myst-parser is not installed (the ``docs`` extra), except where
``FASTDL_REQUIRE_ORACLES`` names them; skipped outside a source checkout.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

import fastdl
from fastdl import data, layers, losses, optim

DOCS = Path(__file__).resolve().parents[1] / "docs"
TOOLS = ("sphinx", "myst_parser")
#: Seconds the build may take (about 6 s here).
TIMEOUT = 120

_ID = re.compile(r'\bid="([^"]+)"')


def _require_tools():
    missing = [t for t in TOOLS if importlib.util.find_spec(t) is None]
    if not missing:
        return
    required = set(filter(None, os.environ.get("FASTDL_REQUIRE_ORACLES", "").split(",")))
    if required & set(missing):
        pytest.fail(f"FASTDL_REQUIRE_ORACLES requires {missing}, not installed")
    pytest.skip(f"docs tools not installed ({', '.join(missing)}): pip install -e \".[docs]\"")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``(html directory, seconds)`` of one build of docs/ (fails on any warning)."""
    if not (DOCS / "conf.py").is_file():
        pytest.skip("no docs/conf.py (not a source checkout)")
    _require_tools()
    out = tmp_path_factory.mktemp("docs")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
           "-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the docs build ran over {TIMEOUT} s")
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, (
        f"the docs build failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
    return out / "html", seconds


def _ids(html_dir):
    ids = set()
    for page in html_dir.rglob("*.html"):
        ids.update(_ID.findall(page.read_text(encoding="utf-8")))
    return ids


def test_docs_build_without_warnings(built):
    html, seconds = built
    assert (html / "index.html").is_file()
    assert (html / "API.html").is_file(), "docs/API.md (the contract) is part of the site"
    assert seconds < 60, f"the docs build took {seconds:.0f} s"


def test_every_public_name_is_documented(built):
    ids = _ids(built[0])
    expected = [f"fastdl.{n}" for n in fastdl.__all__
                if not isinstance(getattr(fastdl, n), types.ModuleType)]
    for module in (layers, losses, optim, data):
        expected += [f"{module.__name__}.{n}" for n in module.__all__]
    missing = [name for name in expected if name not in ids]
    assert not missing, f"not in the API reference: {missing}"


def test_torch_bridge_is_documented_when_it_imports(built):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    try:
        import fastdl.torch as ft
    except ModuleNotFoundError as exc:
        if exc.name != "fastdl.torch":
            raise
        pytest.skip("this version has no fastdl.torch")
    ids = _ids(built[0])
    expected = [f"fastdl.torch.{n}" for n in ft.functional.__all__]
    expected += [f"fastdl.torch.nn.{n}" for n in ft.nn.__all__]
    missing = [name for name in expected if name not in ids]
    assert not missing, f"not in the API reference: {missing}"
