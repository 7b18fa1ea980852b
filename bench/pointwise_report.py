"""Side-by-side timing of every pointwise op of the op table: fastdl's Numba
and Cython backends, fastdl's NumPy reference backend and PyTorch CPU, in one
run with matched thread counts; writes a markdown table.

    python bench/pointwise_report.py [--n 4194304] [--out bench/results/POINTWISE.md]

Rows come from fastdl._ops (an op added to the table is measured here without
a new line).  Each contender's time is the best of three medians of 7 calls,
after one warm-up call (JIT compilation, first touch): PyTorch allocates its
result on every call (fastdl's activations write into a given ``out``), and
whether glibc hands it warm heap pages or fresh ones that fault in moved
single medians of its 4M-element activations by up to 5x (relu 4.7 ms in
one median, 0.3 in the next, in one process).  "%bw" is the faster fastdl
backend's (bytes read + written) / time / copy bandwidth, the copy bandwidth
probed in the same run (a parallel np.copyto over 4x the op's bytes, the
best of three medians).  PyTorch rows: torch.nn.functional.<name> forward,
and for ``_with_grad`` a loss's forward + backward through autograd;
activation backward passes have no PyTorch row.
"""

import argparse
import threading
import warnings

import numpy as np

import fastdl
from _report_util import cpu_model, emit, median_time
from fastdl import _ops


def best_median(f):
    """The best of three median_time(f): see the module docstring."""
    return min(median_time(f) for _ in range(3))


def copy_bandwidth(nbytes, threads):
    src = np.ones(nbytes, np.uint8)
    dst = np.empty_like(src)
    parts = np.array_split(np.arange(nbytes), threads)
    bounds = [(p[0], p[-1] + 1) for p in parts]

    def copy():  # np.copyto releases the GIL: the parts copy in parallel
        ts = [threading.Thread(target=np.copyto, args=(dst[a:b], src[a:b])) for a, b in bounds]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    return max(2 * nbytes / median_time(copy, 11) for _ in range(3))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1 << 22, help="elements per array")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--out", default=None, help="markdown file to write")
    args = ap.parse_args(argv)
    threads = fastdl.get_num_threads()
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    except ImportError:
        pass
    n, dt = args.n, np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 3).astype(dt)
    t = rng.standard_normal(n).astype(dt)
    inputs = {"real": (x, t), "binary": (x, rng.uniform(0, 1, n).astype(dt)),
              "logprob": (np.log(rng.uniform(0.01, 1, n)).astype(dt),
                          rng.uniform(0.01, 1, n).astype(dt))}
    out = np.empty_like(x)
    bw = copy_bandwidth(4 * n * dt.itemsize, threads)
    backends = [b for b in ("numba", "cython") if b in fastdl.available_backends()]
    rows = []
    warnings.filterwarnings("ignore", "reduction: 'mean' divides")
    for op in _ops.OPS:
        if op.kind not in ("activation", "pointwise_loss"):
            continue
        tf = _ops.torch_function(op, torch)
        if op.kind == "activation":
            parts = [("", (x,), 2), ("_backward", (t, x), 3)]
        else:
            parts = [("", inputs[op.sample], 2), ("_with_grad", inputs[op.sample], 3)]
        for suffix, arrays, moved in parts:
            f = getattr(fastdl, op.name + suffix)
            kw = {"out": out} if op.kind == "activation" or suffix else {}
            times = {be: best_median(lambda: f(*arrays, backend=be, **kw))
                     for be in backends + ["numpy"]}
            if tf is not None and suffix == "":
                ta = [torch.from_numpy(a) for a in arrays]
                times["torch"] = best_median(lambda: tf(*ta))
            elif tf is not None and suffix == "_with_grad":
                tx = torch.from_numpy(arrays[0].copy()).requires_grad_(True)
                tt = torch.from_numpy(arrays[1])

                def fwd_bwd():
                    tx.grad = None
                    tf(tx, tt).backward()
                times["torch"] = best_median(fwd_bwd)
            rows.append((op.name + suffix, times, moved * n * dt.itemsize))

    def ms(v):
        return f"{v * 1e3:.2f}" if v is not None else "—"

    def ratio(a, b):
        return f"{a / b:.2f}×" if a is not None and b is not None else "—"
    lines = [
        f"# Pointwise ops: {n:,} {dt.name} elements, {threads} threads for every contender",
        "",
        f"Machine: {cpu_model()}; copy bandwidth probed in this run: {bw / 1e9:.1f} GB/s. "
        f"numpy {np.__version__}, torch {torch.__version__ if torch else 'absent'}, "
        f"fastdl {fastdl.__version__}. Best of three medians of 7 calls (ms; PyTorch "
        "allocates its result, see the script); ratios are time(contender) / "
        "time(faster fastdl backend); `auto` picks per op (`fastdl/_config.py`). "
        "Written by `python bench/pointwise_report.py`.",
        "",
        "| function | " + " | ".join(backends) + " | numpy ref | torch | vs numpy | vs torch | % copy bw |",
        "|---|" + "---:|" * (len(backends) + 5),
    ]
    for name, times, nbytes in rows:
        best = min(times[b] for b in backends)
        lines.append(f"| `{name}` | " + " | ".join(ms(times[b]) for b in backends)
                     + f" | {ms(times['numpy'])} | {ms(times.get('torch'))} | "
                     f"{ratio(times['numpy'], best)} | {ratio(times.get('torch'), best)} | "
                     f"{100 * nbytes / best / bw:.0f}% |")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
