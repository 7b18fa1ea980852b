"""The benchmark report (``python -m fastdl bench``) runs and writes its tables.

A tiny mode (sizes below the parallel threshold, one thread, few repeats)
keeps this fast; the figures themselves are not checked, only the report's
shape: every kernel × dtype row, the ratio/bandwidth/memory columns, the
fastest-backend table and the target check list.
"""

import re

import pytest

import fastdl
from fastdl import _bench_report as report
from fastdl.__main__ import main

COMPILED = tuple(b for b in fastdl.available_backends() if b != "numpy")


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    status = report.run_report(["--tiny", "--no-startup", "--threads", "1",
                                "--out", str(out)])
    return status, out, (out / "RESULTS.md").read_text(encoding="utf-8")


def _table_rows(md, heading):
    """The rows of the markdown table that follows ``heading`` (as lists of cells)."""
    block = md.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_report_exit_status_and_files(tiny_report):
    status, out, _ = tiny_report
    assert status == (0 if COMPILED else 1)
    pytest.importorskip("matplotlib")
    png = out / "results.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_machine_and_limits(tiny_report):
    md = tiny_report[2]
    for key in ("cpu", "threads used (every contender)", "numpy", "numba", "torch",
                "fastdl", "blas", "date"):
        assert f"- **{key}**:" in md
    assert "- **threads used (every contender)**: 1" in md
    assert re.search(r"copy bandwidth.*\*\*[\d.]+ GB/s\*\*", md)
    assert re.search(r"float32 \*\*\d+ GFLOP/s\*\*, float64 \*\*\d+ GFLOP/s\*\*", md)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_report_row_kernel_table(tiny_report, dtype):
    md = tiny_report[2]
    header, _, *rows = _table_rows(md, f"## Row kernels, {dtype}")
    assert header[:5] == ["kernel", "N×C", "dtype", "numpy", "torch"]
    for b in COMPILED:
        assert {b, f"numpy/{b}", f"torch/{b}", f"BW {b}", f"mem {b}"} <= set(header)
    sizes = ["x".join(map(str, s)) for s in report.SIZES["tiny"][0]]
    got = {(r[0], r[1]) for r in rows}
    assert got == {(k, s) for k in report.ROW_KERNELS for s in sizes}
    for row in rows:
        assert row[2] == dtype and len(row) == len(header)
        cells = dict(zip(header, row))
        for b in COMPILED:
            assert cells[b] != "WRONG"
            assert re.fullmatch(r"[\d.]+×", cells[f"numpy/{b}"])
            assert re.fullmatch(r"\d+%", cells[f"BW {b}"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_report_affine_table(tiny_report, dtype):
    md = tiny_report[2]
    header, _, *rows = _table_rows(md, f"## Affine, {dtype}")
    assert header[:6] == ["kernel", "N×D×H", "dtype", "numpy", "floor", "torch"]
    assert {r[0] for r in rows} == {"affine_forward", "affine_backward"}
    for b in COMPILED:
        assert f"{b}/floor" in header and f"GEMM-peak {b}" in header


def test_report_fastest_and_targets(tiny_report):
    md = tiny_report[2]
    header, _, *rows = _table_rows(md, "## Fastest backend per kernel")
    assert header[:3] == ["kernel", "dtype", "fastest"]
    if COMPILED:
        assert {(r[0], r[1]) for r in rows} == {
            (k, d) for k in report.CORE_KERNELS for d in ("float32", "float64")}
        assert all(r[2] in COMPILED for r in rows)
    header, _, *rows = _table_rows(md, "## Targets")
    assert header == ["target", "result", "figure"]
    labels = " ".join(r[0] for r in rows)
    for needle in ("cross_entropy_with_grad 64x10: ≥ 10× PyTorch", "import fastdl",
                   "affine_forward", "affine_backward", "float64 never slower"):
        assert needle in labels
    assert all(r[1] in ("met", "**missed**", "n/a") for r in rows)
    assert "Not measured (`--no-startup`)" in md


def test_startup_subprocesses():
    """The fresh-interpreter probes run and return sane figures (Cython: no JIT)."""
    times = report.import_times(1, runs=1)
    assert 0 < times["numpy"] < 30 and 0 < times["fastdl"] < 30
    if "cython" not in COMPILED:
        pytest.skip("the Cython backend is not built")
    lines = []
    (row,) = report.first_call_times(["logsumexp"], ("cython",), 1, lines.append)
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


def test_report_training_step_section(tiny_report):
    md = tiny_report[2]
    header, _, *rows = _table_rows(md, "## Training step (digits MLP)")
    assert header == ["variant", "time/step", "NumPy/X", "torch/X"]
    names = [r[0] for r in rows]
    assert names[:3] == ["fastdl layer API (auto)", "fastdl compile_step", "hand-written NumPy"]
    assert names[-1] == "GEMMs alone (floor)"
    for r in rows:
        assert re.fullmatch(r"[\d.]+ (ns|µs|ms|s)", r[1]), r
    base = next(r for r in rows if r[0] == "hand-written NumPy")
    assert base[2] == "1.00×"
    targets = _table_rows(md, "## Targets")
    labels = [t[0] for t in targets]
    assert "digits MLP training step (compile_step): ≥ 3× hand-written NumPy" in labels
