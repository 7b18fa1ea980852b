"""The Numba row kernels' speed as a fraction of the Cython ones', measured
side by side in one process; writes a markdown table.

    python bench/numba_vs_cython.py [--threads 1] [--quick] [--out FILE]

Rows: softmax, log_softmax, logsumexp, cross_entropy and
cross_entropy_with_grad (class-index targets, ``out=`` given) at the
benchmark sizes, float32 and float64.  Each contender's time is the best of
three rounds of medians of calls, the two backends alternating within every
round, so both see the same machine.  The ratio is time(Cython) /
time(Numba): 1 means as fast, below 1 slower.

``python -m fastdl bench`` interleaves every contender (NumPy, both
backends, PyTorch) in its rounds, and on a 2-core machine a contender that
runs after PyTorch or after the other OpenMP runtime's spinning threads
pays for them (Numba softmax 4096x1000 float32 on 2 threads: 1.07-1.26 ms
alone in a process, 2.28 ms in the bench run); this script compares the
two backends only.
"""

import argparse

import numba
import numpy as np

import fastdl
from _report_util import cpu_model, emit, median_time

SIZES = ((64, 10), (4096, 1000), (1024, 32000))
QUICK_SIZES = ((64, 10), (256, 1000))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small sizes, few calls (a smoke run)")
    ap.add_argument("--out", default=None, help="markdown file to write")
    args = ap.parse_args(argv)
    fastdl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for shape in (QUICK_SIZES if args.quick else SIZES):
        for dt in (np.float32, np.float64):
            x = rng.standard_normal(shape).astype(dt)
            out = np.empty_like(x)
            t = rng.integers(0, shape[1], shape[0])
            calls = 3 if args.quick else max(5, min(200, int(4e7 / x.size)))
            ops = (
                ("softmax", lambda be: fastdl.softmax(x, out=out, backend=be)),
                ("log_softmax", lambda be: fastdl.log_softmax(x, out=out, backend=be)),
                ("logsumexp", lambda be: fastdl.logsumexp(x, axis=-1, backend=be)),
                ("cross_entropy", lambda be: fastdl.cross_entropy(x, t, backend=be)),
                ("cross_entropy_with_grad",
                 lambda be: fastdl.cross_entropy_with_grad(x, t, out=out, backend=be)),
            )
            for name, f in ops:
                best = {}
                for _ in range(3):
                    for be in ("numba", "cython"):
                        t_be = median_time(lambda: f(be), calls)
                        best[be] = min(best.get(be, np.inf), t_be)
                rows.append((name, shape, np.dtype(dt).name, best["numba"], best["cython"]))

    def us(v):
        return f"{v * 1e6:.1f}"
    lines = [
        f"# Numba row kernels against Cython: {args.threads} thread(s), one process",
        "",
        f"Machine: {cpu_model()}. numba {numba.__version__}, "
        f"numpy {np.__version__}, fastdl {fastdl.__version__}. Best of three rounds "
        "of medians, the backends alternating (µs); ratio = time(Cython) / "
        "time(Numba). Written by `python bench/numba_vs_cython.py`.",
        "",
        "| kernel | N×C | dtype | numba | cython | ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, shape, dtype, tn, tc in rows:
        lines.append(f"| `{name}` | {shape[0]}×{shape[1]} | {dtype} | {us(tn)} | {us(tc)} | "
                     f"{tc / tn:.2f} |")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
