"""Every pointwise op and optimizer step on the Cython backend, saved to a file.

Usage: ``FASTDL_CYTHON_ISA=baseline python tests/_isa_worker.py OUT.npz``

tests/test_cython_isa.py runs it once per build of the elementwise and optim
modules (``FASTDL_CYTHON_ISA``: the portable one, the AVX2 one and the AVX-512 one) and
compares the files bit for bit.  Inputs: ordinary values of several scales,
then every special value (±0, ±inf, NaN, the extremes, subnormals), at a
length that takes the parallel build and at one that takes the serial one;
each op at its default and at its sample options; losses with every
reduction, the backward and the fused forward + backward.  The file also
records which build ran (``isa``).
"""

from __future__ import annotations

import sys

import numpy as np

import fastdl
from fastdl import _ops
from fastdl.backends.cython import elementwise, optim


def _inputs(rng, n, dt):
    """x (ordinary then special values), t (targets for ``sample``), dy."""
    f = np.finfo(dt)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, f.max, -f.max, f.tiny, -f.tiny,
                        f.smallest_subnormal, -f.smallest_subnormal, 1.0, -1.0, 88.7, -88.7,
                        709.8, -709.8, 20.0, -20.0, 1e-8, -1e-8], dt)
    x = np.concatenate([(rng.standard_normal(n) * rng.choice([0.1, 1.0, 10.0, 100.0], n))
                        .astype(dt), special])
    m = x.shape[0]
    t = {"real": (3 * rng.standard_normal(m)).astype(dt),
         "binary": rng.uniform(0, 1, m).astype(dt),
         "logprob": rng.uniform(0.01, 1, m).astype(dt)}
    dy = rng.standard_normal(m).astype(dt)
    return x, t, dy


def results():
    rng = np.random.default_rng(20261204)
    out = {"isa": np.array([elementwise._cy.ISA, optim._cy.ISA])}
    for dt in (np.float32, np.float64):
        for n in (40_000, 999):  # the parallel build (2 threads), the serial one
            x, t, dy = _inputs(rng, n, np.dtype(dt))
            key = f"{np.dtype(dt).name}-{n}"
            with np.errstate(all="ignore"):
                for op in _ops.of_kind("activation"):
                    for label, kw in (("default", {}), ("sample", _ops.sample_options(op))):
                        f = getattr(fastdl, op.name)
                        b = getattr(fastdl, op.name + "_backward")
                        out[f"{key}/{op.name}/{label}"] = f(x, backend="cython", **kw)
                        out[f"{key}/{op.name}_backward/{label}"] = b(dy, x, backend="cython",
                                                                   **kw)
                for op in _ops.of_kind("pointwise_loss"):
                    xi = np.log(t["logprob"]) if op.sample == "logprob" else x
                    ti = t[op.sample]
                    extras = {}
                    if op.extras:
                        extras = {name: rng.uniform(0.5, 2, xi.shape[0]).astype(dt)
                                  for name in op.extras}
                    for label, kw in (("default", {}), ("sample", _ops.sample_options(op)),
                                      ("extras", {**_ops.sample_options(op), **extras})):
                        if label == "extras" and not extras:
                            continue
                        for red in ("none", "sum", "mean"):
                            f = getattr(fastdl, op.name)
                            base = f"{key}/{op.name}/{label}/{red}"
                            out[base] = np.asarray(f(xi, ti, reduction=red, backend="cython",
                                                     **kw))
                            g = getattr(fastdl, op.name + "_backward")
                            go = dy if red == "none" else 0.7
                            out[base + "/backward"] = g(go, xi, ti, reduction=red,
                                                        backend="cython", **kw)
                            w = getattr(fastdl, op.name + "_with_grad")
                            loss, grad = w(xi, ti, reduction=red, backend="cython", **kw)
                            out[base + "/with_grad"] = np.asarray(loss)
                            out[base + "/with_grad/grad"] = grad
            # Optimizers: a few steps from the same state.
            p = (rng.standard_normal(n)).astype(dt)
            grads = [(rng.standard_normal(n)).astype(dt) for _ in range(3)]
            for label, kw in (("plain", dict(lr=0.1)),
                              ("momentum", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
                              ("nesterov", dict(lr=0.1, momentum=0.9, nesterov=True))):
                w = p.copy()
                buf = np.zeros_like(w) if "momentum" in kw else None
                for i, g in enumerate(grads):
                    fastdl.sgd_step(w, g, buf, first_step=i == 0, backend="cython", **kw)
                out[f"{key}/sgd/{label}"] = w
            w, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
            for i, g in enumerate(grads):
                fastdl.adam_step(w, g, m, v, step=i + 1, lr=0.01, weight_decay=0.01,
                                 backend="cython")
            out[f"{key}/adam/w"], out[f"{key}/adam/m"], out[f"{key}/adam/v"] = w, m, v
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], **results())
