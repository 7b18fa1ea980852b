"""A PyTorch word-level language model of the standard library's docstrings,
trained in lockstep with three heads: fastdl.torch's fused linear +
cross-entropy, PyTorch's ``F.linear_cross_entropy`` and the plain
``F.linear`` + ``F.cross_entropy``.

Next-word prediction from the three previous words (``stdlib_corpus.py``:
offline, a vocabulary of about 6,100 words).  The model is the same
``nn.Module`` for every head: ``Embedding -> Linear -> Tanh`` and the
vocabulary-sized output layer, from the same initial values, on the same
mini-batches, with ``torch.optim.Adam``; only the head's function differs.
The losses agree step by step to float32 rounding.  Each step is timed for
every head on the same batch, one after the other, so machine load is shared
and the ratios are fair; the thread count is the same for PyTorch, fastdl
and the BLAS fastdl calls (NumPy's).

Run: ``python examples/torch_lm_stdlib.py [--epochs 1] [--threads 2]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import fastdl
import fastdl.torch as ft
import stdlib_corpus

F = torch.nn.functional


def _fastdl_head(h, W, b, y):
    return ft.linear_cross_entropy(h, W, y, linear_bias=b)


def _torch_fused_head(h, W, b, y):
    return F.linear_cross_entropy(h, W, y, linear_bias=b)


def _torch_plain_head(h, W, b, y):
    return F.cross_entropy(F.linear(h, W, b), y)


HEADS = {"fastdl.torch": _fastdl_head, "torch linear_cross_entropy": _torch_fused_head,
         "torch linear + cross_entropy": _torch_plain_head}


class WordLM(torch.nn.Module):
    """Embedding of the context words, one hidden layer, and the output layer's W, b."""

    def __init__(self, vocab, context=3, embed=32, hidden=256, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embed = torch.nn.Parameter(0.1 * torch.randn(vocab, embed, generator=g))
        self.hidden = torch.nn.Linear(context * embed, hidden)
        self.W = torch.nn.Parameter(torch.empty(vocab, hidden))
        self.b = torch.nn.Parameter(torch.empty(vocab))
        with torch.no_grad():  # nn.Linear's initialisation, from our generator
            for p, fan_in in ((self.hidden.weight, context * embed),
                              (self.hidden.bias, context * embed), (self.W, hidden),
                              (self.b, hidden)):
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / fan_in ** 0.5)

    def forward(self, ids):
        return torch.tanh(self.hidden(self.embed[ids].reshape(ids.shape[0], -1)))


def main(epochs=1, batch_size=1024, lr=3e-3, seed=0, threads=2, limit_files=None,
         max_tokens=None, max_steps=None, verbose=True):
    """Train the three models; return their losses, median step times and the ratios."""
    torch.set_num_threads(threads)
    fastdl.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(threads)
    except ImportError:  # pragma: no cover
        limits = None
    X, y, vocab = stdlib_corpus.load(3, limit_files=limit_files)
    if max_tokens is not None:
        X, y = X[:max_tokens], y[:max_tokens]
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    models = {name: WordLM(len(vocab), seed=seed) for name in HEADS}
    optims = {name: torch.optim.Adam(m.parameters(), lr=lr) for name, m in models.items()}
    losses = {name: [] for name in HEADS}
    times = {name: [] for name in HEADS}
    gen = torch.Generator().manual_seed(seed)
    step = 0
    try:
        for _ in range(epochs):
            order = torch.randperm(y.numel(), generator=gen)
            for start in range(0, y.numel() - batch_size + 1, batch_size):
                idx = order[start:start + batch_size]
                ids, target = X[idx], y[idx]
                for name, head in HEADS.items():
                    model, opt = models[name], optims[name]
                    t0 = time.perf_counter()
                    opt.zero_grad(set_to_none=False)
                    loss = head(model(ids), model.W, model.b, target)
                    loss.backward()
                    opt.step()
                    times[name].append(time.perf_counter() - t0)
                    losses[name].append(loss.item())
                step += 1
                if max_steps is not None and step >= max_steps:
                    break
    finally:
        if limits is not None:
            limits.unregister()
    warm = slice(min(3, step - 1), None)  # the first steps include one-time set-up
    step_ms = {name: 1e3 * statistics.median(t[warm]) for name, t in times.items()}
    base = step_ms["fastdl.torch"]
    result = {"losses": losses, "step_ms": step_ms, "vocab": len(vocab), "steps": step,
              "speedup": {name: ms / base for name, ms in step_ms.items()}}
    if verbose:
        print(f"vocabulary {len(vocab)} words, batch {batch_size}, {step} steps, "
              f"{threads} threads for every library")
        for name in HEADS:
            print(f"  {name:30s} loss {losses[name][0]:.3f} -> {losses[name][-1]:.3f}, "
                  f"{step_ms[name]:7.1f} ms/step ({result['speedup'][name]:.2f}x fastdl.torch's)")
        worst = max(abs(a - b) / abs(b) for a, b in zip(losses["fastdl.torch"],
                                                         losses["torch linear + cross_entropy"]))
        print(f"  largest relative loss difference, fastdl.torch vs torch: {worst:.1e}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args()
    main(epochs=args.epochs, batch_size=args.batch_size, threads=args.threads,
         max_steps=args.max_steps)
