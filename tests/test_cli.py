"""``python -m fastdl``: --version, and the demo without scikit-learn."""

import subprocess
import sys
from pathlib import Path

import pytest

import fastdl
from fastdl import _train_demo
from fastdl.__main__ import main


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag, capsys):
    assert main([flag]) == 0
    assert capsys.readouterr().out == f"fastdl {fastdl.__version__}\n"


def test_version_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "fastdl", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"fastdl {fastdl.__version__}\n"


def _without_sklearn(monkeypatch):
    # A None entry in sys.modules makes the import raise ImportError.
    for name in ("sklearn", "sklearn.datasets", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, name, None)


def test_demo_without_sklearn_says_what_to_install(monkeypatch, capsys):
    _without_sklearn(monkeypatch)
    assert main(["demo", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert 'pip install "fastdl[examples]"' in line and "scikit-learn" in line
    assert "Traceback" not in captured.err


def test_demo_without_sklearn_exit_status():
    code = ("import sys\n"
            "for name in ('sklearn', 'sklearn.datasets', 'sklearn.model_selection'):\n"
            "    sys.modules[name] = None\n"
            "sys.argv = ['fastdl', 'demo']\n"
            "import runpy\n"
            "runpy.run_module('fastdl', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == _train_demo.MISSING_SKLEARN


def test_examples_extra_brings_sklearn():
    """The extra the message names exists and installs scikit-learn (source checkout)."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(fastdl.__file__).resolve().parent.parent / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("fastdl is not running from a source checkout")
    extras = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"]
    assert '"fastdl[examples]"' in _train_demo.MISSING_SKLEARN
    assert any(req.startswith("scikit-learn") for req in extras["examples"])
