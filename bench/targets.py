"""The project's speed targets, checked by ``python -m fastdl bench``.

The report (``fastdl/_bench/cli.py``) loads this file only when fastdl runs
from a source checkout (``bench/targets.py`` beside the ``fastdl`` package);
an installed wheel measures the same tables and says "targets: not checked".

:func:`check_targets` returns ``(target, met, figure)`` triples: ``met`` is
True, False or None (not measured in this run, e.g. a size ``--quick`` skips).
Every figure is a ratio taken in the same run, as ``BENCHMARKS.md`` asks.
"""

from fastdl._bench.cases import ROW_KERNELS, auto_backend
from fastdl._bench.render import fmt_ratio, fmt_time, ratio, size_label

#: The sizes the row-kernel targets name.
LARGE = ((4096, 1000), (1024, 32000))


def _training_targets(train):
    fast = train.get("fastdl compile_step")
    layers_t = train.get("fastdl layer API (auto)")
    checks = []
    for other, need in (("hand-written NumPy", 3.0), ("PyTorch eager", 2.0)):
        label = f"digits MLP training step (compile_step): ≥ {need:g}× {other}"
        r = ratio(train.get(other), fast)
        if r is None:
            checks.append((label, None, "not measured"))
            continue
        checks.append((label, r >= need,
                       f"{r:.2f}× ({fmt_time(fast)} vs {fmt_time(train[other])}); "
                       f"layer API {fmt_ratio(ratio(train[other], layers_t))}"))
    return checks


def check_targets(cases, compiled, copy_bw, startup, import_s, train=None, linear_ce=None):
    """The targets: list of (target, met: bool or None, figure)."""
    checks = _training_targets(train) if train else []

    def get(op, size, dtype="float32"):
        for c in cases:
            if c["op"] == op and tuple(c["size"]) == tuple(size) and c["dtype"] == dtype:
                return c
        return None

    def ratio_check(label, op, size, other, at_least):
        c = get(op, size)
        be = auto_backend(op, compiled)
        if c is None or be is None:
            checks.append((label, None, "not measured (size not in this run)"))
            return
        r = ratio(c["times"].get(other), c["times"].get(be))
        if r is None:
            checks.append((label, None, f"no {other} time"))
            return
        best = max(compiled, key=lambda b: ratio(c["times"].get(other), c["times"].get(b)) or 0)
        rb = ratio(c["times"].get(other), c["times"].get(best))
        extra = f"; best backend {best} {rb:.2f}×" if best != be and rb else ""
        checks.append((label, r >= at_least,
                       f"{be} (auto) {r:.2f}× (need ≥ {at_least}×, "
                       f"{other} {fmt_time(c['times'][other])} vs {fmt_time(c['times'][be])})"
                       f"{extra}"))

    for size in LARGE:
        s = size_label(size)
        ratio_check(f"cross_entropy_with_grad {s}: ≥ 5× NumPy", "cross_entropy_with_grad",
                    size, "numpy", 5)
        ratio_check(f"cross_entropy_with_grad {s}: ≥ 2× PyTorch", "cross_entropy_with_grad",
                    size, "torch", 2)
    ratio_check("cross_entropy_with_grad 64x10: ≥ 10× PyTorch", "cross_entropy_with_grad",
                (64, 10), "torch", 10)
    for op in ("softmax", "log_softmax"):
        for size in LARGE:
            s = size_label(size)
            ratio_check(f"{op} {s}: ≥ 3× NumPy", op, size, "numpy", 3)
            ratio_check(f"{op} {s}: ≥ 1.2× PyTorch", op, size, "torch", 1.2)
    for size in ((64, 10), (256, 1000)) + LARGE:
        ratio_check(f"logsumexp {size_label(size)}: ≥ 1.5× PyTorch", "logsumexp", size,
                    "torch", 1.5)

    def bandwidth_check(op, size, at_least):
        c = get(op, size)
        be = auto_backend(op, compiled)
        label = f"{op} {size_label(size)}: ≥ {at_least:.0%} of copy bandwidth"
        if c is None or be is None or be not in c["times"]:
            checks.append((label, None, "not measured"))
            return
        frac = c["bytes"] / c["times"][be] / copy_bw
        checks.append((label, frac >= at_least, f"{be} (auto) {frac:.0%}"))

    # Bandwidth: every memory-bound kernel at the large sizes, float32.
    for op in ROW_KERNELS:
        for size in LARGE:
            bandwidth_check(op, size, 0.6)

    for op, limit in (("affine_forward", 1.10), ("affine_backward", 1.15)):
        be = auto_backend(op, compiled)
        sel = [c for c in cases if c["op"] == op and c["dtype"] == "float32"]
        for c in sel:
            floor = c["floors"][0]
            r = ratio(c["times"].get(be), c["times"].get(floor))
            label = f"{op} {size_label(c['size'])}: ≤ {limit}× {floor}"
            checks.append((label, None if r is None else r <= limit,
                           "—" if r is None else
                           f"{be} (auto) {r:.2f}× ({fmt_time(c['times'][be])} vs "
                           f"{fmt_time(c['times'][floor])})"))

    checks += _small_call_targets(get, ratio_check, bandwidth_check, compiled)
    checks += _startup_targets(startup, import_s)
    checks.append(_float64_target(cases, compiled))
    checks += _linear_ce_targets(linear_ce or [], compiled)
    return checks


def _small_call_targets(get, ratio_check, bandwidth_check, compiled):
    """The small-call targets: the latency size at least as fast as PyTorch
    by a margin, rows beyond the caches at 80% of copy bandwidth, the small
    affine layer near PyTorch's and every affine call near its bare GEMM.
    ``ratio_check`` and ``bandwidth_check`` append to the list the caller
    returns; the other checks are returned."""
    checks = []
    for op in ("softmax", "log_softmax", "logsumexp"):
        ratio_check(f"{op} 64x10: ≥ 1.5× PyTorch", op, (64, 10), "torch", 1.5)
    ratio_check("cross_entropy_with_grad 64x10: ≥ 15× PyTorch", "cross_entropy_with_grad",
                (64, 10), "torch", 15)
    for op in ("softmax", "log_softmax", "cross_entropy_with_grad"):
        bandwidth_check(op, (1024, 32000), 0.8)
    ratio_check("affine_forward 64x784x128: ≥ 0.9× PyTorch", "affine_forward",
                (64, 784, 128), "torch", 0.9)
    for size in ((64, 784, 128), (256, 1024, 1024), (2048, 1024, 1024)):
        c = get("affine_forward", size)
        be = auto_backend("affine_forward", compiled)
        label = f"affine_forward {size_label(size)}: ≤ 1.05× the bare GEMM"
        if c is None or be is None or be not in c["times"]:
            checks.append((label, None, "not measured"))
            continue
        r = ratio(c["times"][be], c["times"].get(c["floors"][0]))
        checks.append((label, None if r is None else r <= 1.05,
                       "—" if r is None else f"{be} (auto) {r:.2f}×"))
    return checks


#: Issue 12's sizes (N, H, V) of the fused linear + cross-entropy head.
LINEAR_CE_SIZES = ((1024, 1024, 32000), (4096, 512, 32000), (8192, 256, 50257))


def _linear_ce_targets(lce, compiled):
    """Issue 12's 'done means', float32, per size: with_grad <= 1.15x the three
    bare GEMMs, >= 2x PyTorch's chunked path and faster than its reference
    path, peak extra memory <= 64 MiB; the loss alone <= 1.1x one GEMM.
    Ratios are the per-round medians of the run (fastdl's auto backend)."""
    be = auto_backend("cross_entropy", compiled)
    checks = []
    for size in LINEAR_CE_SIZES:
        s = size_label(size)
        found = {c["op"]: c for c in lce if tuple(c["size"]) == size}
        grad, loss = found.get("linear_cross_entropy_with_grad"), found.get("linear_cross_entropy")
        name = f"fastdl-{be}"
        wanted = [
            (grad, f"linear_cross_entropy_with_grad {s}: ≤ 1.15× the three bare GEMMs",
             f"{name}/GEMMs", lambda r: r <= 1.15),
            (grad, f"linear_cross_entropy_with_grad {s}: ≥ 2× PyTorch's chunked path",
             f"torch-chunked/{name}", lambda r: r >= 2),
            (grad, f"linear_cross_entropy_with_grad {s}: faster than PyTorch's reference path",
             f"torch/{name}", lambda r: r > 1),
            (loss, f"linear_cross_entropy (loss only) {s}: ≤ 1.1× one GEMM",
             f"{name}/GEMM", lambda r: r <= 1.1),
        ]
        for case, label, key, ok in wanted:
            r = None if case is None or be is None else case["ratios"].get(key)
            if r is None:
                checks.append((label, None, "not measured (size not in this run)"))
                continue
            checks.append((label, ok(r[0]), f"{key} {r[0]:.2f}× (per round "
                                            f"{r[1]:.2f}–{r[2]:.2f}×, {case['rounds']} rounds)"))
        label = f"linear_cross_entropy_with_grad {s}: peak extra memory ≤ 64 MiB"
        peak = None if grad is None else grad["tracemalloc"].get(name)
        if peak is None:
            checks.append((label, None, "not measured"))
        else:
            rss = grad["rss"].get(name)
            checks.append((label, peak <= 64 << 20,
                           f"{peak / (1 << 20):.1f} MiB (tracemalloc)"
                           + ("" if rss is None else f"; RSS {rss / (1 << 20):.1f} MiB")))
    return checks


def _startup_targets(startup, import_s):
    checks = []
    if import_s is not None:
        checks.append(("import fastdl ≤ 0.5 s", import_s["fastdl"] <= 0.5,
                       f"{import_s['fastdl']:.3f} s (import numpy alone "
                       f"{import_s['numpy']:.3f} s)"))
    else:
        checks.append(("import fastdl ≤ 0.5 s", None, "not measured (--no-startup)"))
    if startup:
        for row in startup:
            w = row["warm"]
            first = w["load_s"] + w["first_serial_s"]
            checks.append((f"warm first call {row['op']} ({row['backend']}) ≤ 0.3 s",
                           first <= 0.3,
                           f"{first:.3f} s (backend load {w['load_s']:.3f} s + call "
                           f"{w['first_serial_s']:.3f} s); parallel path first call "
                           f"{w['first_parallel_s']:.3f} s"))
    else:
        checks.append(("warm first call ≤ 0.3 s", None, "not measured (--no-startup)"))
    return checks


def _float64_target(cases, compiled):
    slower = []
    n64 = 0
    for c in cases:
        if c["dtype"] != "float64":
            continue
        for b in compiled:
            if b in c["times"] and "numpy" in c["times"]:
                n64 += 1
                r = c["times"]["numpy"] / c["times"][b]
                if r < 1:
                    slower.append(f"{c['op']} {size_label(c['size'])} {b} {r:.2f}×")
    return ("float64 never slower than NumPy (every backend, every row)",
            (not slower) if n64 else None,
            f"all {n64} rows ≥ 1×" if not slower else
            f"{len(slower)} of {n64} rows slower: " + "; ".join(slower))
