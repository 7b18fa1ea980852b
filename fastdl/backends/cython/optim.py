"""The "optim" kernel family on Cython (``kernels/optim.pyx``).

See :mod:`fastdl.backends.numpy.optim` for the contract.
"""

from __future__ import annotations

from fastdl.backends.cython._select import Module

_cy = Module("optim")

NAME = "cython"


def sgd_step(w, g, buf, lr, momentum, nesterov, weight_decay, first):
    n = w.shape[0]
    if n:
        # The momentum buffer is optional: w stands in for it, never touched.
        _cy.sgd_step(w.dtype, n, w, g, w if buf is None else buf, buf is not None, lr,
                     momentum, nesterov, weight_decay, first)


def adam_step(w, g, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2):
    n = w.shape[0]
    if n:
        _cy.adam_step(w.dtype, n, w, g, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2)
