"""Backends: modules that implement fastdl's private kernel interface.

The public functions in :mod:`fastdl` validate and convert everything, then
call a backend kernel that trusts its arguments.  Every backend module
(``numpy.core``, ``numba.core``, ``cython.core`` in one package per backend)
defines the same functions with the same signatures; ``numpy.core`` is the
reference.

Kernel contract
---------------
Unless a line says otherwise: every array is C-contiguous, float arrays share
one dtype (float32 or float64), shapes are consistent, outputs are
preallocated by the caller and kernels return ``None``.  Inputs may be
read-only.  Kernels never allocate arrays the size of their inputs.

``affine_forward(x, W, b, out)``
    x (N, D), W (H, D), b (H,) or None, out (N, H): ``out = x @ W.T + b``.
``affine_backward(dy, x, W, dx, dW, db)``
    dy (N, H), x (N, D), W (H, D); writes, unless dx is None, dx (N, D) =
    dy @ W, dW (H, D) = dy.T @ x and, unless db is None, db (H,) = dy.sum(0).
``logsumexp(x, out)``
    x (M, C), out (M,): ``log(sum(exp(x), axis=1))``, stable; a row whose max
    is -inf gives -inf, a row with +inf gives +inf, NaN propagates.
``softmax(x, out)`` / ``log_softmax(x, out)``
    x, out (M, C); ``out`` may be the same array as ``x``.
``softmax_backward(dy, y, out)``
    ``out = y * (dy - sum(dy * y, axis=1, keepdims=True))``; out may alias dy or y.
``log_softmax_backward(dy, y, out)``
    ``out = dy - exp(y) * sum(dy, axis=1, keepdims=True)``; out may alias dy or y.
``cross_entropy_index(logits, target, weight, ignore_index, label_smoothing, scale, loss, grad)``
    logits (N, C); target int64 (N,), every entry in [0, C) or equal to
    ``ignore_index`` (int); weight (C,) or None; label_smoothing float in
    [0, 1].  Writes loss (N,) float64: the unreduced loss of each row,
    ``(1-eps) * w[t] * (lse - z[t]) + eps/C * sum_c w[c] * (lse - z[c])``,
    0 for ignored rows.  When grad (N, C) is not None, also writes
    ``grad[i] = scale[i] * d loss[i] / d logits[i]`` (scale: (N,) float64),
    0 for ignored rows; grad may be the same array as logits.
``cross_entropy_prob(logits, target, weight, label_smoothing, scale, loss, grad)``
    As above with probability targets: target (N, C) of the logits' dtype,
    ``q = (1-eps) * target + eps/C`` and
    ``loss[i] = sum_c w[c] * q[i, c] * (lse_i - z[i, c])``.

Reductions, ``grad_output`` and denominators are the caller's job: the
kernels see per-row quantities only, so every backend shares one reduction.
"""

from .._ops import family_kernels

#: Names of the backends fastdl knows, fastest-first by default.
BACKEND_NAMES = ("cython", "numba", "numpy")

#: Names of the kernels every backend's core module must define (from the op table).
KERNEL_NAMES = family_kernels("core")
