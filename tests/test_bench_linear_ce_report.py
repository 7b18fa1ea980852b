"""The linear + cross-entropy section of ``python -m fastdl bench``
(fastdl/_bench/linear_ce.py) and its targets in bench/targets.py."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

import fastdl
from fastdl._bench import linear_ce as lce

COMPILED = tuple(b for b in fastdl.available_backends() if b != "numpy")
TARGETS = Path(__file__).resolve().parent.parent / "bench" / "targets.py"


def _log(msg):
    pass


@pytest.fixture(scope="module")
def tiny_cases():
    torch = pytest.importorskip("torch")
    return lce.run_cases("tiny", COMPILED, torch, 1, _log, memory=True)


def test_cases_time_check_and_measure_every_contender(tiny_cases):
    assert [(c["op"], tuple(c["size"])) for c in tiny_cases] == [
        (op, size) for size in lce.SIZES["tiny"] for op in lce.OPS]
    for c in tiny_cases:
        names = ["numpy", *(f"fastdl-{b}" for b in COMPILED), "torch", "torch-chunked",
                 c["floor"]]
        assert list(c["times"]) == names and not c["errors"], c["errors"]
        assert all(len(v) == c["rounds"] for v in c["samples"].values())
        for be in COMPILED:
            med, lo, hi = c["ratios"][f"fastdl-{be}/{c['floor']}"]
            assert 0 < lo <= med <= hi
        # tracemalloc sees NumPy's and fastdl's allocations, RSS every contender's
        assert set(c["tracemalloc"]) == {"numpy", *(f"fastdl-{b}" for b in COMPILED)}
        assert set(c["rss"]) == set(names)
        assert c["rss"][c["floor"]] is None
        if os.path.exists("/proc/self/clear_refs"):
            assert all(c["rss"][n] is not None for n in names[:-1])


def test_rss_peak_extra_sees_the_logits_numpy_holds():
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux /proc")
    size = (2048, 16, 8192)  # float32 logits 64 MiB; numpy holds them and two more
    logits = size[0] * size[2] * 4
    numpy_peak = lce.rss_peak_extra(lce.GRAD_OP, "numpy", size, 1)
    fast = lce.rss_peak_extra(lce.GRAD_OP, f"fastdl-{(COMPILED or ('numpy',))[0]}", size, 1)
    assert numpy_peak >= 2 * logits, numpy_peak / 2**20
    assert fast <= 64 * 2**20 + 16 * 2**20, fast / 2**20  # the budget, plus code and slack
    assert lce.rss_peak_extra(lce.GRAD_OP, "GEMMs", size, 1) is None


def test_check_rejects_a_wrong_result():
    x, W, b, t = lce.make_inputs((32, 8, 50))
    exp = lce.np_linear_ce_with_grad(x, W, b, t)
    lce.check("same", exp, exp)
    bad = (exp[0], exp[1] + 0.01, exp[2], exp[3])
    with pytest.raises(AssertionError, match="bad"):
        lce.check("bad", bad, exp)


def test_markdown_section_and_its_place(tiny_cases, tmp_path):
    lines = lce.markdown(tiny_cases, 1, COMPILED)
    text = "\n".join(lines)
    assert text.startswith("## Linear + cross-entropy head (float32)")
    assert "1 thread for every contender" in text
    for op in lce.OPS:
        assert f"### {op}:" in text
    assert text.count("| 64x32x500 | `torch-chunked` |") == 2
    md = tmp_path / "RESULTS.md"
    md.write_text("# report\n\n## Targets\n\nx\n\n## Start-up\n\ny\n", encoding="utf-8")
    lce.insert_markdown(md, lines)
    got = md.read_text(encoding="utf-8")
    assert got.index("## Targets") < got.index("## Linear + cross-entropy") \
        < got.index("## Start-up")
    assert lce.markdown([], 1, COMPILED) == []


def _targets():
    if not TARGETS.is_file():
        pytest.skip("bench/targets.py not present (installed package)")
    spec = importlib.util.spec_from_file_location("_targets_under_test", TARGETS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_linear_ce_targets_met_missed_and_not_measured():
    targets = _targets()
    be = "cython"
    size = [4096, 512, 32000]

    def case(op, floor_ratio, peak=None):
        floor = lce.FLOOR[op]
        return {"op": op, "size": size, "rounds": 5, "ratios": {
            f"fastdl-{be}/{floor}": (floor_ratio, floor_ratio * 0.9, floor_ratio * 1.1),
            f"torch-chunked/fastdl-{be}": (2.5, 2.0, 3.0),
            f"torch/fastdl-{be}": (0.9, 0.8, 1.0)},
            "tracemalloc": {f"fastdl-{be}": peak}, "rss": {f"fastdl-{be}": None}}

    checks = targets._linear_ce_targets(
        [case(lce.GRAD_OP, 1.10, 62 << 20), case(lce.LOSS_OP, 1.2)], (be, "numba"))
    by = {label: ok for label, ok, _ in checks}
    assert by["linear_cross_entropy_with_grad 4096x512x32000: ≤ 1.15× the three bare GEMMs"]
    assert by["linear_cross_entropy_with_grad 4096x512x32000: ≥ 2× PyTorch's chunked path"]
    assert by["linear_cross_entropy_with_grad 4096x512x32000: faster than PyTorch's "
              "reference path"] is False
    assert by["linear_cross_entropy (loss only) 4096x512x32000: ≤ 1.1× one GEMM"] is False
    assert by["linear_cross_entropy_with_grad 4096x512x32000: peak extra memory ≤ 64 MiB"]
    assert by["linear_cross_entropy_with_grad 1024x1024x32000: ≤ 1.15× the three bare "
              "GEMMs"] is None  # not in this run
    assert len(checks) == 15
