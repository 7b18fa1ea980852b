"""Numerical gradient checking by central differences."""

from __future__ import annotations

import numpy as np

__all__ = ["gradcheck", "GradcheckError"]

# Default step and tolerances per dtype.  The central difference has
# truncation error O(eps^2) and rounding error O(u / eps) (u the unit
# roundoff), minimised near eps = u^(1/3): ~6e-6 in float64, ~5e-3 in float32.
_DEFAULTS = {
    np.dtype(np.float64): dict(eps=1e-6, atol=1e-6, rtol=1e-5),
    np.dtype(np.float32): dict(eps=5e-3, atol=5e-3, rtol=5e-2),
}


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with the central-difference estimate."""


def gradcheck(f, *inputs, backward, params=(), eps=None, atol=None, rtol=None, rng=None):
    """Check an analytic gradient against central differences.

    The check uses a random probe ``dy`` of f's output shape and the scalar
    objective ``L(inputs, params) = sum(f(*inputs) * dy)``; its gradient is
    exactly the vector-Jacobian product the ``backward`` functions of fastdl
    compute.  Each element of each input and parameter is nudged by ``±eps``
    and ``(L(+) - L(-)) / (2 eps)`` is compared with the analytic value.

    Parameters
    ----------
    f : callable
        ``f(*inputs)`` returns an array or a scalar.  Its result is copied at
        once, so ``f`` may return a buffer it reuses (as fastdl layers do).
    *inputs : ndarray
        Float arrays; each is perturbed in place on a private copy, so the
        caller's arrays are not modified.  Non-float inputs (integer labels)
        are passed through unchecked.
    backward : callable
        ``backward(dy, *inputs)`` returns the gradient of ``L`` with respect
        to the inputs: one array when there is a single input, else a
        sequence with one entry per input (None for inputs not to check).
        It runs once, before the numerical pass; when ``params`` are given,
        it must also leave each parameter's ``.grad`` set (a layer's
        ``forward`` then ``backward`` does).
    params : sequence of objects with ``.value`` and ``.grad`` arrays, optional
        Parameters to check too (e.g. ``layer.parameters()``).  Their
        ``.value`` arrays are perturbed in place and restored.
    eps : float, optional
        Finite-difference step; default 1e-6 for float64, 5e-3 for float32.
    atol, rtol : float, optional
        An element passes when ``|analytic - numeric| <= atol + rtol * |numeric|``;
        defaults 1e-6 / 1e-5 for float64, 5e-3 / 5e-2 for float32.
    rng : numpy.random.Generator or int, optional
        Source of the probe ``dy`` (default seed 0, so a check is repeatable).

    Returns
    -------
    True
        When every element passes.

    Raises
    ------
    GradcheckError
        (an ``AssertionError``) naming the worst element: which input or
        parameter, its index, the analytic and numerical values.
    ValueError
        When ``backward`` returns the wrong number of gradients or a
        gradient of the wrong shape.

    Notes
    -----
    Check in float64 where possible: a float32 difference quotient carries
    a rounding error of about ``1e-7 * |L| / eps``.  Avoid points where f is
    not differentiable (ReLU at 0, L1 at the target).

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> x = np.array([0.5, -1.0, 2.0])
    >>> fastdl.gradcheck(np.tanh, x, backward=lambda dy, x: dy * (1 - np.tanh(x) ** 2))
    True
    """
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(
        0 if rng is None else rng)
    work = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in inputs]
    checked = [i for i, a in enumerate(work)
               if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    dtypes = [work[i].dtype for i in checked] + [np.asarray(p.value).dtype for p in params]
    dtype = np.dtype(np.float32) if np.dtype(np.float32) in dtypes else np.dtype(np.float64)
    d = _DEFAULTS.get(dtype, _DEFAULTS[np.dtype(np.float64)])
    eps = d["eps"] if eps is None else float(eps)
    atol = d["atol"] if atol is None else float(atol)
    rtol = d["rtol"] if rtol is None else float(rtol)

    y0 = np.array(f(*work), dtype=np.float64, copy=True)
    dy = gen.standard_normal(y0.shape)
    if y0.ndim == 0:
        dy = np.float64(1.0)
    dy_arg = np.asarray(dy, dtype=dtype) if y0.ndim else dtype.type(dy)

    grads = backward(dy_arg, *[np.array(a, copy=True) if isinstance(a, np.ndarray) else a
                               for a in work])
    if len(work) == 1 and not isinstance(grads, (tuple, list)):
        grads = [grads]
    grads = list(grads) if grads is not None else []
    if len(grads) != len(work):
        raise ValueError(f"backward returned {len(grads)} gradients for {len(work)} inputs")
    analytic = []
    for i in checked:
        if grads[i] is None:
            continue
        g = np.array(grads[i], dtype=np.float64, copy=True)
        if g.shape != work[i].shape:
            raise ValueError(
                f"backward's gradient for input {i} has shape {g.shape}, "
                f"the input has shape {work[i].shape}")
        analytic.append((f"input {i}", work[i], g))
    for k, p in enumerate(params):
        g = np.array(p.grad, dtype=np.float64, copy=True)
        if g.shape != p.value.shape:
            raise ValueError(f"parameter {k}'s grad has shape {g.shape}, value {p.value.shape}")
        analytic.append((f"parameter {k}", p.value, g))

    def objective():
        return float(np.sum(np.asarray(f(*work), dtype=np.float64) * dy))

    worst = None  # (excess, name, index, analytic, numeric)
    for name, arr, g in analytic:
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + eps
            lp = objective()
            arr[idx] = old - eps
            lm = objective()
            arr[idx] = old
            num = (lp - lm) / (2.0 * eps)
            err = abs(g[idx] - num)
            excess = err - (atol + rtol * abs(num))
            if not np.isfinite(err):
                excess = np.inf
            if excess > 0 and (worst is None or excess > worst[0]):
                worst = (excess, name, idx, g[idx], num)
    if worst is not None:
        _, name, idx, a, n = worst
        raise GradcheckError(
            f"gradient mismatch, worst at {name} index {idx}: analytic {a!r}, "
            f"numerical {n!r} (|diff| {abs(a - n):.3g} > atol {atol:g} + rtol {rtol:g} * |numerical|)"
        )
    return True
