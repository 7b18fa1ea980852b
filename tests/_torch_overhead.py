"""Per-call cost of fastdl.torch over the bare fastdl call, measured side by side.

Run: ``python tests/_torch_overhead.py [--rows 64 --cols 10 --repeat 200]``

Each pair (fastdl.torch op on tensors, the fastdl function on the same
memory as ndarrays) is timed in alternating short bursts, so both see the
same machine load; the table reports the best burst of each (microseconds
per call), their difference and PyTorch's own op.  Imported by
``tests/test_fastdl_torch.py``, which runs :func:`measure` briefly.
"""

from __future__ import annotations

import argparse
import timeit


def cases(rows=64, cols=10):
    """(name, fastdl.torch call, bare fastdl call, torch call) for the timed ops."""
    import numpy as np
    import torch

    import fastdl
    import fastdl.torch as ft

    F = torch.nn.functional
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, cols, generator=g)
    xg = x.clone().requires_grad_()
    t = torch.randint(0, cols, (rows,), generator=g)
    y = torch.randn(rows, cols, generator=g)
    xn, tn, yn = x.numpy(), t.numpy(), y.numpy()
    return [
        ("cross_entropy", lambda: ft.cross_entropy(x, t),
         lambda: fastdl.cross_entropy(xn, tn), lambda: F.cross_entropy(x, t)),
        ("cross_entropy, input requires grad", lambda: ft.cross_entropy(xg, t),
         lambda: fastdl.cross_entropy_with_grad(xn, tn), lambda: F.cross_entropy(xg, t)),
        ("cross_entropy forward + backward", lambda: ft.cross_entropy(xg, t).backward(),
         lambda: fastdl.cross_entropy_with_grad(xn, tn),
         lambda: F.cross_entropy(xg, t).backward()),
        ("relu", lambda: ft.relu(x), lambda: fastdl.relu(xn), lambda: F.relu(x)),
        ("mse_loss", lambda: ft.mse_loss(x, y), lambda: fastdl.mse_loss(xn, yn),
         lambda: F.mse_loss(x, y)),
        ("softmax", lambda: ft.softmax(x, 1), lambda: fastdl.softmax(xn, 1),
         lambda: F.softmax(x, 1)),
        ("linear", lambda: ft.linear(x, y), lambda: fastdl.affine_forward(xn, yn),
         lambda: F.linear(x, y)),
    ], np


def _best_pair(a, b, number, repeat):
    best_a = best_b = float("inf")
    for _ in range(repeat):
        best_a = min(best_a, timeit.timeit(a, number=number))
        best_b = min(best_b, timeit.timeit(b, number=number))
    return best_a / number * 1e6, best_b / number * 1e6


def measure(rows=64, cols=10, number=200, repeat=200, names=None):
    """{name: (fastdl.torch us, fastdl us, torch us)} for the cases (or those in ``names``)."""
    import torch

    torch.set_num_threads(1)
    table, _ = cases(rows, cols)
    result = {}
    for name, ours, bare, theirs in table:
        if names is not None and name not in names:
            continue
        for f in (ours, bare, theirs):
            f()  # warm-up (JIT, caches)
        t_ours, t_bare = _best_pair(ours, bare, number, repeat)
        t_torch = min(timeit.repeat(theirs, number=number, repeat=max(repeat // 4, 1))) \
            / number * 1e6
        result[name] = (t_ours, t_bare, t_torch)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--cols", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    res = measure(args.rows, args.cols, repeat=args.repeat)
    print(f"{args.rows} x {args.cols} float32, one thread, best of {args.repeat} bursts (us/call)")
    print(f"{'op':38s} {'fastdl.torch':>12s} {'fastdl':>8s} {'added':>7s} {'torch':>8s}")
    for name, (ours, bare, theirs) in res.items():
        print(f"{name:38s} {ours:12.2f} {bare:8.2f} {ours - bare:7.2f} {theirs:8.2f}")


if __name__ == "__main__":
    main()
