"""The fused linear + cross-entropy head in ``python -m fastdl bench``.

At the (N, H, V) sizes of :data:`SIZES` (issue 12's in the full mode), float32,
one set of contenders per size for the loss and its gradients (forward +
backward) and one for the loss alone:

- ``fastdl-<backend>``: :func:`fastdl.linear_cross_entropy_with_grad` with
  ``out=`` buffers (and :func:`fastdl.linear_cross_entropy`), the row kernels
  on each compiled backend;
- ``numpy``: what a NumPy user writes (:func:`np_linear_ce_with_grad`: the
  (N, V) logits, the cs231n softmax loss, then the GEMMs of dx, dW, db);
- ``torch``: ``F.linear_cross_entropy`` and ``torch.autograd.grad``, its
  default (reference) path; ``torch-chunked``: the same with
  ``options=torch.nn.LinearCrossEntropyOptions()``;
- ``GEMMs``: the bare three GEMMs (logits, dx, dW) into preallocated buffers,
  the floor any implementation pays; ``GEMM``: the logits GEMM alone, the
  loss's floor.

The calls take seconds at the full sizes, so they are timed in rounds (one
call of every contender per round, in rotating order, after one warm-up call
each) rather than with the calibrated blocks of :func:`.measure.time_contenders`;
each round's ratios are taken between calls made within seconds of each
other, and the report gives their median and range.  Every result is checked
against the NumPy contender (rtol 1e-3) before its time is trusted.

Memory per call, two ways: tracemalloc's peak (:func:`.measure.peak_extra_bytes`;
NumPy and fastdl allocations) and, for every contender, the peak resident set
of one call in a fresh child process (:func:`rss_peak_extra`; the only way to
see PyTorch's allocations), minus the gradients the call returns (fastdl
writes them into the given ``out=`` buffers).

Shared with ``bench/test_bench_linear_ce.py`` (the pytest-benchmark suite):
:func:`make_inputs`, :func:`np_linear_ce_with_grad`, :func:`rss_peak_extra`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import fastdl
from .baselines import np_affine_backward, np_cross_entropy, np_cross_entropy_with_grad
from .measure import load_average, peak_extra_bytes

#: (N, H, V) per mode; "full" is issue 12's: a 1024-token micro-batch of a
#: 1024-wide model with a 32k vocabulary, 4096 tokens at width 512, and
#: GPT-2's vocabulary at width 256.
SIZES = {
    "full": ((1024, 1024, 32000), (4096, 512, 32000), (8192, 256, 50257)),
    "quick": ((512, 256, 8000), (2048, 128, 16000)),
    "tiny": ((64, 32, 500),),
}
#: Timed rounds per mode (one call of every contender per round).
ROUNDS = {"full": 5, "quick": 3, "tiny": 2}

GRAD_OP = "linear_cross_entropy_with_grad"
LOSS_OP = "linear_cross_entropy"
OPS = (GRAD_OP, LOSS_OP)
#: The floor contender of each op.
FLOOR = {GRAD_OP: "GEMMs", LOSS_OP: "GEMM"}

NOTES = {
    "numpy": "logits = x @ W.T + b, the cs231n softmax loss and gradient, then "
             "g @ W, g.T @ x, g.sum(0) (loss only: the logits and the loss)",
    "torch": "F.linear_cross_entropy + torch.autograd.grad (loss only: under no_grad)",
    "torch-chunked": "the same with options=torch.nn.LinearCrossEntropyOptions()",
    "GEMMs": "np.matmul(x, W.T), (z @ W), (z.T @ x) into preallocated buffers, no bias",
    "GEMM": "np.matmul(x, W.T) into a preallocated (N, V) buffer, no bias",
}


def make_inputs(size, seed=0):
    """x (N, H), W (V, H) scaled by 1/sqrt(H), b (V,), class-index target (N,): float32."""
    n, h, v = size
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h), np.float32)
    W = rng.standard_normal((v, h), np.float32) * np.float32(1 / np.sqrt(h))
    b = rng.standard_normal(v, np.float32) * np.float32(0.1)
    target = rng.integers(0, v, n)
    return x, W, b, target


def np_linear_ce_with_grad(x, W, b, target):
    """What a NumPy user writes: the (N, V) logits, softmax CE, three GEMMs."""
    logits = x @ W.T + b
    loss, g = np_cross_entropy_with_grad(logits, target)
    dx, dW, db = np_affine_backward(g, x, W)
    return loss, dx, dW, db


def contenders(op, size, compiled, torch, inputs=None):
    """``{name: fn}`` for one (op, size); each fn returns the loss (and gradients)."""
    n, h, v = size
    x, W, b, target = make_inputs(size) if inputs is None else inputs
    fns = {}
    if op == GRAD_OP:
        fns["numpy"] = lambda: np_linear_ce_with_grad(x, W, b, target)
        for be in compiled:
            # Written once here (their pages resident): the call's memory is its own.
            out = (np.zeros_like(x), np.zeros_like(W), np.zeros_like(b))
            for o in out:
                o.fill(0.0)
            fns[f"fastdl-{be}"] = lambda be=be, out=out: fastdl.linear_cross_entropy_with_grad(
                x, W, target, b=b, out=out, backend=be)
    else:
        fns["numpy"] = lambda: np_cross_entropy(x @ W.T + b, target)
        for be in compiled:
            fns[f"fastdl-{be}"] = lambda be=be: fastdl.linear_cross_entropy(
                x, W, target, b=b, backend=be)
    if torch is not None:
        for name, options in (("torch", None),
                              ("torch-chunked", torch.nn.LinearCrossEntropyOptions())):
            fns[name] = _torch_contender(torch, op, x, W, b, target, options)
    z = np.empty((n, v), np.float32)
    if op == GRAD_OP:
        dx, dW = np.empty_like(x), np.empty_like(W)

        def gemms():
            np.matmul(x, W.T, out=z)
            np.matmul(z, W, out=dx)
            np.matmul(z.T, x, out=dW)

        fns["GEMMs"] = gemms
    else:
        fns["GEMM"] = lambda: np.matmul(x, W.T, out=z)
    return fns


def _torch_contender(torch, op, x, W, b, target, options):
    F = torch.nn.functional
    tt = torch.from_numpy(target)
    if op == GRAD_OP:
        tx, tW, tb = (torch.from_numpy(a).requires_grad_(True) for a in (x, W, b))

        def torch_with_grad():
            loss = F.linear_cross_entropy(tx, tW, tt, linear_bias=tb, options=options)
            gx, gW, gb = torch.autograd.grad(loss, (tx, tW, tb))
            return loss.detach().numpy(), gx.numpy(), gW.numpy(), gb.numpy()

        return torch_with_grad
    tx, tW, tb = map(torch.from_numpy, (x, W, b))

    def torch_loss():
        with torch.no_grad():
            return F.linear_cross_entropy(tx, tW, tt, linear_bias=tb, options=options).numpy()

    return torch_loss


def check(name, got, expected):
    """AssertionError unless ``got`` matches the NumPy contender's ``expected``."""
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for g, e in zip(got, expected):
        e = np.asarray(e, np.float64)
        atol = 1e-3 * max(1.0, float(np.abs(e).max()))
        np.testing.assert_allclose(np.asarray(g, np.float64), e, rtol=1e-3, atol=atol,
                                   err_msg=name)


def time_rounds(fns, rounds):
    """Seconds per call ``{name: [sample per round]}``.

    One untimed call of each contender first (JIT compilation, first touch of
    buffers, thread pools), then ``rounds`` rounds of one call each, the
    order rotating and alternating direction from round to round, so that a
    drift of the shared machine falls on every contender alike.
    """
    names = list(fns)
    for name in names:
        fns[name]()
    samples = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - t0)
    return samples


def round_ratios(samples, num, den):
    """(median, min, max) of the per-round ratio num_time / den_time, or None."""
    if num not in samples or den not in samples:
        return None
    r = [a / b for a, b in zip(samples[num], samples[den])]
    return statistics.median(r), min(r), max(r)


# ---------------------------------------------------------------------------
# peak resident memory of one call, in a child process
# ---------------------------------------------------------------------------

_RSS_SCRIPT = r"""
import json, sys
import numpy as np
op, contender, size, threads = sys.argv[1], sys.argv[2], tuple(json.loads(sys.argv[3])), int(sys.argv[4])
try:
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads, user_api="blas")
except ImportError:
    pass
torch = None
if contender.startswith("torch"):
    import torch
    torch.set_num_threads(threads)
compiled = ()
if contender.startswith("fastdl-"):
    import fastdl
    fastdl.set_num_threads(threads)
    compiled = (contender.split("-", 1)[1],)
from fastdl._bench.linear_ce import contenders, make_inputs

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

# Warm up on a tiny problem (libraries, kernels, JIT, BLAS buffers), so the
# measured call is the contender's first at full size: memory it freed in a
# warm-up call of its own would otherwise be reused without showing.
contenders(op, (8, 8, 16), compiled, torch)[contender]()
inputs = make_inputs(size)
fn = contenders(op, size, compiled, torch, inputs)[contender]
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # resets VmHWM, the peak resident set, to the current one
result = fn()
peak = status("VmHWM")
# The gradients the call returns are not scratch; fastdl's are its out= buffers.
arrays = [np.asarray(a) for a in (result if isinstance(result, tuple) else (result,))]
fresh = [a for a in arrays[1:] if not contender.startswith("fastdl-")]
print(json.dumps({"peak_extra": peak - before - sum(a.nbytes for a in fresh)}))
"""


def rss_peak_extra(op, contender, size, threads):
    """Peak resident bytes one call of ``contender`` adds, beyond its inputs and
    the gradients it returns, measured in a fresh Python process (Linux
    ``/proc``; None elsewhere or on failure).  The floor contenders write
    into preallocated buffers and report None."""
    if contender in FLOOR.values() or not os.path.exists("/proc/self/clear_refs"):
        return None
    env = dict(os.environ)
    env["FASTDL_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, op, contender,
                           json.dumps(list(size)), str(threads)],
                          capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_extra"]


# ---------------------------------------------------------------------------
# the report's section
# ---------------------------------------------------------------------------

def run_cases(mode, compiled, torch, threads, log, rounds=None, memory=True):
    """Every (op, size) of ``mode``: times, checks, ratios and memory, as dicts."""
    rounds = rounds or ROUNDS[mode]
    cases = []
    for size in SIZES[mode]:
        inputs = make_inputs(size)
        for op in OPS:
            fns = contenders(op, size, compiled, torch, inputs)
            floor = FLOOR[op]
            expected = fns["numpy"]()
            errors = {}
            for name in list(fns):
                if name in ("numpy", floor):
                    continue
                try:
                    check(name, fns[name](), expected)
                except AssertionError as exc:
                    errors[name] = str(exc).strip().splitlines()[0][:200]
                    del fns[name]
            load_start = load_average()
            samples = time_rounds(fns, rounds)
            case = {
                "op": op, "size": list(size), "dtype": "float32", "rounds": rounds,
                "floor": floor, "errors": errors,
                "load": [load_start, load_average()],
                "times": {k: statistics.median(v) for k, v in samples.items()},
                "spread": {k: [min(v), max(v)] for k, v in samples.items()},
                "samples": samples,
                "ratios": {},
                "tracemalloc": {},
                "rss": {},
            }
            fast = [k for k in fns if k.startswith("fastdl-")]
            for be in fast:
                case["ratios"][f"{be}/{floor}"] = round_ratios(samples, be, floor)
                for other in ("numpy", "torch", "torch-chunked"):
                    case["ratios"][f"{other}/{be}"] = round_ratios(samples, other, be)
            if memory:
                # NumPy's gradients are the call's own arrays, not scratch.
                grads = sum(a.nbytes for a in inputs[:3]) if op == GRAD_OP else 0
                for name, fn in fns.items():
                    if name == "numpy":
                        case["tracemalloc"][name] = peak_extra_bytes(fn) - grads
                    elif name.startswith("fastdl-"):
                        case["tracemalloc"][name] = peak_extra_bytes(fn)
                for name in fns:
                    case["rss"][name] = rss_peak_extra(op, name, size, threads)
            del fns
            cases.append(case)
            t = case["times"]
            log(f"{op} {'x'.join(map(str, size))} float32: "
                + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items())
                + (f"  WRONG: {', '.join(errors)}" if errors else ""))
    return cases


def _mib(b):
    return "—" if b is None else f"{b / (1 << 20):.1f} MiB"


def _ratio(r):
    return "—" if r is None else f"{r[0]:.2f}× [{r[1]:.2f}–{r[2]:.2f}]"


def _ms(t):
    return "—" if t is None else f"{t * 1e3:.1f} ms"


def markdown(cases, threads, compiled):
    """The report's section on the linear + cross-entropy head (markdown lines)."""
    if not cases:
        return []
    L = ["## Linear + cross-entropy head (float32)", "",
         f"{threads} thread{'s' if threads > 1 else ''} for every contender (fastdl's "
         "kernels, BLAS, PyTorch). Median of "
         f"{cases[0]['rounds']} rounds, one call of every contender per round (after a "
         "warm-up call), the order rotating; each ratio is the median `[min–max]` of its "
         "per-round ratios, between calls seconds apart. Contenders: "
         + "; ".join(f"`{k}`: {v}" for k, v in NOTES.items()) + ". "
         "`÷ floor` = time / the floor's (the bare GEMMs, which add no bias, loss or db); "
         "`torch ÷` and `chunked ÷` = PyTorch's time / this one (> 1× means this is "
         "faster). Memory: peak extra bytes of one call beyond its inputs and the "
         "gradients it returns, `RSS` from a fresh child process (the only view of "
         "PyTorch's), `tracemalloc` of NumPy's allocations. `load` = 1-minute load "
         "average before / after the row's timing.", ""]
    for op in OPS:
        sel = [c for c in cases if c["op"] == op]
        if not sel:
            continue
        title = ("loss and gradients (forward + backward)" if op == GRAD_OP
                 else "loss only (forward)")
        header = ["N×H×V", "contender", "time [min–max]", "÷ floor", "torch ÷", "chunked ÷",
                  "RSS", "tracemalloc", "load"]
        rows = []
        for c in sel:
            smp, floor = c["samples"], c["floor"]
            load = " / ".join("—" if v is None else f"{v:.2f}" for v in c["load"])
            for name in smp:
                lo, hi = c["spread"][name]
                rows.append([
                    "x".join(map(str, c["size"])), f"`{name}`",
                    f"{_ms(c['times'][name])} [{lo * 1e3:.1f}–{hi * 1e3:.1f}]",
                    "—" if name == floor else _ratio(round_ratios(smp, name, floor)),
                    "—" if name == "torch" else _ratio(round_ratios(smp, "torch", name)),
                    "—" if name == "torch-chunked" else _ratio(
                        round_ratios(smp, "torch-chunked", name)),
                    _mib(c["rss"].get(name)), _mib(c["tracemalloc"].get(name)), load])
            rows += [["x".join(map(str, c["size"])), f"`{n}`", "WRONG: " + e, "", "", "", "",
                      "", load] for n, e in c["errors"].items()]
        L += [f"### {op}: {title}", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        L += ["| " + " | ".join(row) + " |" for row in rows]
        L.append("")
    return L


def insert_markdown(path, lines):
    """Put ``lines`` into the report at ``path``, before its start-up section."""
    if not lines:
        return
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    section = "\n".join(lines) + "\n"
    at = text.find("\n## Start-up\n")
    text = text + "\n" + section if at < 0 else text[:at + 1] + section + text[at:]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
