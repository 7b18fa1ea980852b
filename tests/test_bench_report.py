"""The benchmark report (``python -m fastdl bench``) runs and writes its tables.

A tiny mode (sizes below the parallel threshold, one thread, few repeats)
keeps this fast; the figures themselves are not checked, only the report's
shape: every kernel × dtype row, the ratio/bandwidth/memory columns, the
fastest-backend table and the target check list; where it writes (a new
directory, never ``bench/results/``), its stdout summary and its warning
when the machine is busy.
"""

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest

import fastdl
from fastdl._bench import cases, cli, measure
from fastdl.__main__ import main

COMPILED = tuple(b for b in fastdl.available_backends() if b != "numpy")
BUSY_LOAD = (os.cpu_count() or 1) + 3.5


def _run(argv):
    """run_report(argv) -> (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.run_report(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """One tiny run with the default output directory, on a 'busy' machine.

    The working directory is a new empty one, so the test sees every file
    and directory the run creates; os.getloadavg reports a load above the
    core count, so the run must warn.
    """
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr(os, "getloadavg", lambda: (BUSY_LOAD, 1.0, 1.0))
        status, stdout, stderr = _run(["--tiny", "--no-startup", "--threads", "1"])
    (out,) = list(cwd.iterdir())
    return {"status": status, "cwd": cwd, "out": out, "stdout": stdout, "stderr": stderr,
            "md": (out / "RESULTS.md").read_text(encoding="utf-8")}


def _table_rows(md, heading):
    """The rows of the markdown table that follows ``heading`` (as lists of cells)."""
    block = md.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_report_exit_status_and_files(tiny_report):
    assert tiny_report["status"] == (0 if COMPILED else 1)
    out = tiny_report["out"]
    assert (out / "results.json").exists()
    pytest.importorskip("matplotlib")
    png = out / "results.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_output_is_a_new_directory(tiny_report):
    """Without --out the report creates ./fastdl-bench-<date>-<time>/, not bench/results/."""
    out = tiny_report["out"]
    assert out.parent == tiny_report["cwd"]
    assert re.fullmatch(r"fastdl-bench-\d{8}-\d{6}", out.name), out.name
    assert not (tiny_report["cwd"] / "bench").exists()


def test_new_output_dir_never_reuses_a_directory(tmp_path):
    import datetime

    now = datetime.datetime(2024, 5, 6, 7, 8, 9)
    first = cli.new_output_dir(str(tmp_path), now)
    (Path(first) / "RESULTS.md").write_text("earlier run")
    second = cli.new_output_dir(str(tmp_path), now)
    assert Path(first).name == "fastdl-bench-20240506-070809"
    assert second != first and os.path.isdir(second)
    assert (Path(first) / "RESULTS.md").read_text() == "earlier run"


def test_stdout_is_a_short_summary(tiny_report):
    lines = tiny_report["stdout"].splitlines()
    assert 3 <= len(lines) <= 8, lines
    text = tiny_report["stdout"]
    assert "|" not in text  # no table: those go to the file
    assert re.search(r"^machine: .+; SIMD: .+", text, re.M)
    assert re.search(r"^threads: 1 for every contender", text, re.M)
    if cli.targets_path() is not None:  # a source checkout: bench/targets.py is there
        assert re.search(r"^targets: \d+ of \d+ met, \d+ missed, \d+ not measured$", text,
                         re.M)
    else:  # an installed package, whose wheel has no bench/
        assert re.search(r"^targets: not checked \(bench/targets.py not found\)$", text, re.M)
    md_path = str(tiny_report["out"] / "RESULTS.md")
    assert lines[-1].startswith("full report: ")
    assert os.path.samefile(tiny_report["cwd"] / lines[-1].split(": ", 1)[1], md_path)
    # progress went to stderr
    assert "copy bandwidth" in tiny_report["stderr"] and "copy bandwidth" not in text


def test_busy_machine_warns_on_stderr_and_in_the_file(tiny_report):
    for where in (tiny_report["stderr"], tiny_report["md"]):
        assert "machine was busy" in where and "unreliable" in where
        assert f"{BUSY_LOAD:.2f} at start" in where and f"{BUSY_LOAD:.2f} at end" in where
    data = json.loads((tiny_report["out"] / "results.json").read_text(encoding="utf-8"))
    assert len(data["warnings"]) == 1


def test_busy_warning_threshold(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert measure.busy_warning({"start": 2.0, "end": 1.5}) is None  # not above 2 cores
    assert measure.busy_warning({"start": None, "end": None}) is None
    warning = measure.busy_warning({"start": 0.3, "end": 2.25})
    assert "2.25 at end" in warning and "at start" not in warning and "2 cores" in warning


def test_load_average_where_the_os_has_none(monkeypatch):
    def no_load():
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", no_load)
    assert measure.load_average() is None
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.1, 0.1))
    assert measure.load_average() == 0.5


def test_report_machine_and_limits(tiny_report):
    md = tiny_report["md"]
    for key in ("cpu", "threads used (every contender)", "numpy", "numba", "torch",
                "fastdl", "blas", "date"):
        assert f"- **{key}**:" in md
    assert "- **threads used (every contender)**: 1" in md
    assert re.search(r"copy bandwidth.*\*\*[\d.]+ GB/s\*\*", md)
    assert re.search(r"float32 \*\*\d+ GFLOP/s\*\*, float64 \*\*\d+ GFLOP/s\*\*", md)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_report_row_kernel_table(tiny_report, dtype):
    md = tiny_report["md"]
    header, _, *rows = _table_rows(md, f"## Row kernels, {dtype}")
    assert header[:5] == ["kernel", "N×C", "dtype", "numpy", "torch"]
    for b in COMPILED:
        assert {b, f"numpy/{b}", f"torch/{b}", f"BW {b}", f"mem {b}"} <= set(header)
    sizes = ["x".join(map(str, s)) for s in cases.SIZES["tiny"][0]]
    got = {(r[0], r[1]) for r in rows}
    assert got == {(k, s) for k in cases.ROW_KERNELS for s in sizes}
    for row in rows:
        assert row[2] == dtype and len(row) == len(header)
        cells = dict(zip(header, row))
        for b in COMPILED:
            assert cells[b] != "WRONG"
            assert re.fullmatch(r"[\d.]+×", cells[f"numpy/{b}"])
            assert re.fullmatch(r"\d+%", cells[f"BW {b}"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_report_affine_table(tiny_report, dtype):
    md = tiny_report["md"]
    header, _, *rows = _table_rows(md, f"## Affine, {dtype}")
    assert header[:6] == ["kernel", "N×D×H", "dtype", "numpy", "floor", "torch"]
    assert {r[0] for r in rows} == {"affine_forward", "affine_backward"}
    for b in COMPILED:
        assert f"{b}/floor" in header and f"GEMM-peak {b}" in header


def test_report_fastest_and_targets(tiny_report):
    md = tiny_report["md"]
    header, _, *rows = _table_rows(md, "## Fastest backend per kernel")
    assert header[:3] == ["kernel", "dtype", "fastest"]
    if COMPILED:
        assert {(r[0], r[1]) for r in rows} == {
            (k, d) for k in cases.CORE_KERNELS for d in ("float32", "float64")}
        assert all(r[2] in COMPILED for r in rows)
    if cli.targets_path() is None:
        pytest.skip("fastdl is not running from a source checkout: no bench/targets.py")
    header, _, *rows = _table_rows(md, "## Targets")
    assert header == ["target", "result", "figure"]
    labels = " ".join(r[0] for r in rows)
    for needle in ("cross_entropy_with_grad 64x10: ≥ 10× PyTorch", "import fastdl",
                   "affine_forward", "affine_backward", "float64 never slower"):
        assert needle in labels
    assert all(r[1] in ("met", "**missed**", "n/a") for r in rows)
    assert "Not measured (`--no-startup`)" in md


def test_targets_found_only_in_a_source_checkout(monkeypatch, tmp_path):
    root = Path(fastdl.__file__).resolve().parent.parent
    if (root / "bench" / "targets.py").is_file() and (root / "pyproject.toml").is_file():
        assert cli.targets_path() == root / "bench" / "targets.py"
    site = tmp_path / "site-packages"
    (site / "fastdl").mkdir(parents=True)
    monkeypatch.setattr(fastdl, "__file__", str(site / "fastdl" / "__init__.py"))
    assert cli.targets_path() is None


def test_report_without_targets_says_so(monkeypatch, tmp_path):
    """From an installed wheel (no bench/targets.py) the report runs and says why no targets."""
    monkeypatch.setattr(cli, "targets_path", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    status, stdout, stderr = _run(["--tiny", "--no-startup", "--no-train", "--no-torch",
                                   "--threads", "1", "--kernels", "logsumexp",
                                   "--dtypes", "float32", "--out", str(tmp_path)])
    assert status == (0 if COMPILED else 1)
    note = "targets: not checked (bench/targets.py not found)"
    assert note in stdout.splitlines()
    md = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert note in md.split("## Targets", 1)[1]
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["targets"] is None
    assert "busy" not in stderr and "busy" not in md  # an idle machine: no warning


def test_startup_subprocesses():
    """The fresh-interpreter probes run and return sane figures (Cython: no JIT)."""
    times = measure.import_times(1, runs=1)
    assert 0 < times["numpy"] < 30 and 0 < times["fastdl"] < 30
    if "cython" not in COMPILED:
        pytest.skip("the Cython backend is not built")
    lines = []
    (row,) = measure.first_call_times(["logsumexp"], ("cython",), 1, lines.append)
    for state in ("cold", "warm"):
        assert set(row[state]) >= {"import_s", "load_s", "first_serial_s",
                                   "first_parallel_s", "steady_s"}
        assert all(0 <= v < 60 for v in row[state].values())
    assert lines and "logsumexp" in lines[0]


def test_main_bench_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--quick", "--out", "--no-startup", "--threads"):
        assert option in out
    assert "anew./fastdl-bench-YYYYmmdd-HHMMSS/" in "".join(out.split())  # wrapped


def test_report_training_step_section(tiny_report):
    md = tiny_report["md"]
    header, _, *rows = _table_rows(md, "## Training step (digits MLP)")
    assert header == ["variant", "time/step", "NumPy/X", "torch/X"]
    names = [r[0] for r in rows]
    assert names[:3] == ["fastdl layer API (auto)", "fastdl compile_step", "hand-written NumPy"]
    assert names[-1] == "GEMMs alone (floor)"
    for r in rows:
        assert re.fullmatch(r"[\d.]+ (ns|µs|ms|s)", r[1]), r
    base = next(r for r in rows if r[0] == "hand-written NumPy")
    assert base[2] == "1.00×"
    if cli.targets_path() is not None:
        labels = [t[0] for t in _table_rows(md, "## Targets")]
        assert "digits MLP training step (compile_step): ≥ 3× hand-written NumPy" in labels
