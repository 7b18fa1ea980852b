"""A PyTorch MLP (64 -> 128 -> 10) on scikit-learn's 8x8 digits, trained twice
in lockstep: once with fastdl.torch's ops, once with stock PyTorch's.

The two models are one script: the same ``nn.Parameter`` initial values, the
same mini-batches, the same ``torch.optim.Adam``; only the functional
namespace differs (``fastdl.torch`` or ``torch.nn.functional``: ``linear``,
``relu``, ``cross_entropy``).  Their losses agree step by step to float32
rounding; each step is timed for both on the same batch, one after the
other, so the machine load is shared and the ratio is fair.

Run: ``python examples/torch_digits_mlp.py [--epochs 20] [--batch-size 64]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastdl
import fastdl.torch as ft

F = torch.nn.functional
OPS = {"fastdl.torch": ft, "torch": F}


class MLP(torch.nn.Module):
    """``linear -> relu -> linear`` written against a functional namespace ``ops``."""

    def __init__(self, ops, hidden=128, seed=0):
        super().__init__()
        self.ops = ops
        g = torch.Generator().manual_seed(seed)
        # nn.Linear's initialisation, drawn from our own generator so both
        # models start from the same values.
        for name, (fan_out, fan_in) in {"1": (hidden, 64), "2": (10, hidden)}.items():
            bound = 1.0 / fan_in ** 0.5
            self.register_parameter(f"W{name}", torch.nn.Parameter(
                (torch.rand(fan_out, fan_in, generator=g) * 2 - 1) * bound))
            self.register_parameter(f"b{name}", torch.nn.Parameter(
                (torch.rand(fan_out, generator=g) * 2 - 1) * bound))

    def forward(self, x):
        h = self.ops.relu(self.ops.linear(x, self.W1, self.b1))
        return self.ops.linear(h, self.W2, self.b2)


def _data(seed):
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)  # pixel intensities 0..16 -> [0, 1]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed,
                                              stratify=y)
    return [torch.from_numpy(a) for a in (X_tr, X_te, y_tr.astype(np.int64),
                                          y_te.astype(np.int64))]


def main(epochs=20, batch_size=64, lr=3e-3, hidden=128, seed=0, max_steps=None,
         threads=1, verbose=True):
    """Train both models; return their loss trajectories, step times and accuracies.

    Returns a dict with, per name in ``OPS``: ``losses`` (one float per
    step), ``step_us`` (median step time in microseconds) and
    ``test_accuracy``; plus ``step_ratio`` (fastdl.torch / torch).
    """
    torch.set_num_threads(threads)
    fastdl.set_num_threads(threads)  # fastdl's own (OpenMP) kernels
    try:  # fastdl's GEMMs run on NumPy's BLAS: same thread count as torch's
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(threads)
    except ImportError:  # pragma: no cover
        limits = None
    X_tr, X_te, y_tr, y_te = _data(seed)
    models = {name: MLP(ops, hidden, seed) for name, ops in OPS.items()}
    optims = {name: torch.optim.Adam(m.parameters(), lr=lr) for name, m in models.items()}
    losses = {name: [] for name in OPS}
    times = {name: [] for name in OPS}
    order = torch.Generator().manual_seed(seed)
    step = 0
    for epoch in range(epochs):
        perm = torch.randperm(len(X_tr), generator=order)
        for start in range(0, len(X_tr), batch_size):
            idx = perm[start:start + batch_size]
            xb, yb = X_tr[idx], y_tr[idx]
            for name, model in models.items():
                opt = optims[name]
                t0 = time.perf_counter()
                opt.zero_grad()
                loss = model.ops.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                times[name].append(time.perf_counter() - t0)
                losses[name].append(loss.item())
            step += 1
            if max_steps is not None and step >= max_steps:
                break
        if max_steps is not None and step >= max_steps:
            break
        if verbose and (epoch + 1) % 5 == 0:
            print(f"epoch {epoch + 1}: " + ", ".join(
                f"{name} loss {np.mean(losses[name][-10:]):.4f}" for name in OPS))
    result = {}
    with torch.no_grad():
        for name, model in models.items():
            acc = (model(X_te).argmax(1) == y_te).double().mean().item()
            result[name] = {"losses": losses[name], "test_accuracy": acc,
                            "step_us": float(np.median(times[name]) * 1e6)}
    result["step_ratio"] = result["fastdl.torch"]["step_us"] / result["torch"]["step_us"]
    if limits is not None:
        limits.unregister()
    if verbose:
        a, b = losses["fastdl.torch"], losses["torch"]
        worst = max(abs(p - q) / max(abs(q), 1e-12) for p, q in zip(a, b))
        print(f"{len(a)} steps of batch {batch_size}; largest relative loss difference "
              f"{worst:.2e}")
        print(f"{'':14s} {'step (median)':>14s} {'held-out accuracy':>18s}")
        for name in OPS:
            r = result[name]
            print(f"{name:14s} {r['step_us']:11.1f} us {r['test_accuracy']:18.4f}")
        print(f"step time fastdl.torch / torch: {result['step_ratio']:.2f}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    main(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, hidden=args.hidden,
         threads=args.threads)
