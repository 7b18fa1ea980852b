"""Helpers shared by the stress tests (hostile input, concurrency, memory).

Every stress scenario runs in a fresh interpreter, so an abort, a segfault or
a deadlock fails one test (with the child's output) instead of killing or
hanging pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


def slow_enabled(config) -> bool:
    """Whether ``slow`` tests were asked for: ``-m slow`` or FASTDL_SLOW=1.

    The default ``pytest`` run does not deselect ``slow`` tests by itself, so
    the long variants skip unless requested.
    """
    markexpr = config.getoption("markexpr", "") or ""
    asked = "slow" in markexpr and "not slow" not in markexpr
    return asked or os.environ.get("FASTDL_SLOW") == "1"


def require_slow(request):
    if not slow_enabled(request.config):
        pytest.skip("long-running variant: run with -m slow or FASTDL_SLOW=1")


def run_python(args, *, timeout, env=None, cwd=None):
    """Run ``python *args`` with a timeout; return the CompletedProcess.

    A timeout fails the test (a deadlock) after killing the child.
    """
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONFAULTHANDLER", "1")
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS_DIR), str(REPO)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else []))
    if env:
        full_env.update(env)
    try:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                              timeout=timeout, env=full_env, cwd=cwd or str(REPO))
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        pytest.fail(f"timed out after {timeout} s (deadlock?)\nstdout:\n{out[-3000:]}\n"
                    f"stderr:\n{err[-3000:]}")


def describe(proc):
    return (f"exit code {proc.returncode}\nstdout:\n{proc.stdout[-6000:]}\n"
            f"stderr:\n{proc.stderr[-4000:]}")
