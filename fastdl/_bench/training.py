"""The digits MLP's training step, timed for every contender of ``python -m fastdl demo``.

Batches of the digits MLP's shapes (64 features, 10 classes, batch 64) come
from a seeded generator, so the bench needs no scikit-learn; the step's time
does not depend on the values.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import fastdl
from .cases import TRAIN_BATCHES, TRAIN_REPEAT
from .render import fmt_time


def _gemm_floor_step(hidden=128):
    """The five GEMMs of the MLP step alone (np.matmul into buffers): the floor."""
    rng = np.random.default_rng(0)
    W1 = rng.random((hidden, 64), dtype=np.float32)
    W2 = rng.random((10, hidden), dtype=np.float32)
    bufs = {}

    def step(x, y):
        n = len(x)
        if n not in bufs:
            bufs[n] = (np.empty((n, hidden), np.float32), np.empty((n, 10), np.float32),
                       np.empty_like(W2), np.empty((n, hidden), np.float32),
                       np.empty_like(W1))
        h, z, dW2, da, dW1 = bufs[n]
        np.matmul(x, W1.T, out=h)
        np.matmul(h, W2.T, out=z)
        np.matmul(z.T, h, out=dW2)
        np.matmul(z, W2, out=da)
        np.matmul(da.T, x, out=dW1)
    return step


def training_step_times(mode, torch, log):
    """Per-step medians (seconds) of the digits MLP step, 1 thread for all.

    64 -> 128 -> ReLU -> 10, CrossEntropyLoss, Adam, float32, batch 64: the
    layer API ("auto"), :func:`fastdl.compile_step`, the hand-written NumPy
    MLP and PyTorch eager of ``python -m fastdl demo``, and the five GEMMs
    alone, each pass over the batches timed in turn for every contender.
    One thread: at batch 64 a second one costs more than it saves,
    for every contender.
    """
    from .. import _train_demo as demo

    rng = np.random.default_rng(0)
    n = 64 * TRAIN_BATCHES[mode]
    X = rng.random((n, 64), dtype=np.float32)
    y = rng.integers(0, 10, n)
    batches = [(X[i:i + 64], y[i:i + 64]) for i in range(0, n, 64)]
    old = fastdl.get_num_threads()
    fastdl.set_num_threads(1)
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=1, user_api="blas")
    except ImportError:
        pass
    if torch is not None:
        old_torch = torch.get_num_threads()
        torch.set_num_threads(1)
    variants = [("fastdl layer API (auto)", lambda: demo._fastdl_step(0, 1e-3))]
    variants.append(("fastdl compile_step", lambda: demo._compiled_fastdl_step(0, 1e-3)))
    variants.append(("hand-written NumPy", lambda: demo._numpy_step(0, 1e-3)))
    if torch is not None:
        variants.append(("PyTorch eager", lambda: demo._torch_step(0, 1e-3, 1)[0]))
    variants.append(("GEMMs alone (floor)", _gemm_floor_step))
    steps = {}
    samples = {}
    try:
        for name, make in variants:
            try:
                steps[name] = make()
            except ImportError as exc:
                log(f"training step: {name} skipped ({exc})")
                continue
            samples[name] = []
            for x, t in batches[:5]:  # warm-up: JIT compilation, buffers
                steps[name](x, t)
        # Passes alternate between the contenders, in a rotating order, so a
        # disturbance of the machine lands on all of them alike.
        names = list(steps)
        for k in range(TRAIN_REPEAT[mode]):
            for name in names[k % len(names):] + names[:k % len(names)]:
                step = steps[name]
                t0 = time.perf_counter()
                for x, t in batches:
                    step(x, t)
                samples[name].append((time.perf_counter() - t0) / len(batches))
        times = {name: statistics.median(v) for name, v in samples.items()}
        log("training step: " + ", ".join(f"{k} {fmt_time(v)}" for k, v in times.items()))
    finally:
        fastdl.set_num_threads(old)
        if limiter is not None:
            limiter.restore_original_limits()
        if torch is not None:
            torch.set_num_threads(old_torch)
    return times
