"""Run fastdl's test suite against the *installed* package, not a source tree.

Usage: python .ci/test_installed.py [PROJECT_DIR] [extra pytest args...]

Used by .ci/test_wheel.sh and by cibuildwheel's test-command.  It copies
``tests/`` and ``examples/`` (test_training loads the examples) from
PROJECT_DIR into a fresh temporary directory and runs pytest there, so the
only ``fastdl`` on ``sys.path`` is the installed one; it checks that before
running.  Every backend must load (``FASTDL_REQUIRE_BACKENDS``): a wheel
whose compiled modules are missing fails instead of skipping.  Doctests of
the installed modules run too (``--doctest-modules --pyargs fastdl``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PYTEST_INI = """\
[pytest]
addopts = -ra
markers =
    slow: long-running variants (deselect with -m 'not slow')
"""


def main(argv: list[str]) -> int:
    project = Path(argv[0] if argv else Path(__file__).resolve().parents[1]).resolve()
    extra = argv[1:]
    with tempfile.TemporaryDirectory(prefix="fastdl-installed-tests-") as tmp:
        tmp_path = Path(tmp)
        for name in ("tests", "examples"):
            if (project / name).is_dir():
                shutil.copytree(project / name, tmp_path / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
        (tmp_path / "pytest.ini").write_text(PYTEST_INI)
        env = dict(os.environ)
        env.setdefault("FASTDL_REQUIRE_BACKENDS", "cython,numba,numpy")
        env.setdefault("FASTDL_REQUIRE_ORACLES", "sklearn,mpmath,hypothesis")
        env.pop("PYTHONPATH", None)
        check = (
            "import sys, fastdl; from pathlib import Path; "
            "f = Path(fastdl.__file__).resolve(); print('fastdl imported from', f); "
            f"sys.exit(3 if Path({str(project)!r}) in f.parents else 0)"
        )
        rc = subprocess.call([sys.executable, "-c", check], cwd=tmp, env=env)
        if rc:
            print("test_installed: fastdl comes from the source tree, not the install",
                  file=sys.stderr)
            return rc
        subprocess.call([sys.executable, "-m", "fastdl", "info"], cwd=tmp, env=env)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests", "--doctest-modules", "--pyargs", "fastdl", *extra]
        print("+", " ".join(cmd), flush=True)
        return subprocess.call(cmd, cwd=tmp, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
