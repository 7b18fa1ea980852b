"""Mini-batch iteration over in-memory datasets."""

from __future__ import annotations

import operator

import numpy as np

__all__ = ["batches"]


def batches(X, y, batch_size, *, shuffle=True, rng=None):
    """Iterate over ``(X_batch, y_batch)`` mini-batches along the first axis.

    Parameters
    ----------
    X : ndarray, shape (N, ...)
        Inputs.
    y : ndarray, shape (N, ...)
        Targets, in the same order as ``X``.
    batch_size : int
        Rows per batch, >= 1; the last batch holds the remaining
        ``N % batch_size`` rows when that is not 0 (nothing is dropped).
    shuffle : bool, default True
        Visit the rows in a random order (a fresh permutation per call).
    rng : numpy.random.Generator or int, optional
        Source of the permutation; pass the same generator across epochs for
        a reproducible run.

    Yields
    ------
    X_batch, y_batch : ndarray
        Views of ``X`` and ``y`` when ``shuffle=False``; C-contiguous copies
        (fancy indexing) otherwise.

    Raises
    ------
    ValueError
        ``X`` and ``y`` differ in length, ``batch_size < 1``, or a 0-d array.
    TypeError
        A non-integer ``batch_size``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl.data import batches
    >>> X = np.arange(10).reshape(5, 2); y = np.arange(5)
    >>> [yb.tolist() for _, yb in batches(X, y, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    """
    X = np.asarray(X)
    y = np.asarray(y)
    try:
        batch_size = operator.index(batch_size)
    except TypeError:
        raise TypeError(f"batch_size must be an integer, got {batch_size!r}") from None
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError("X and y need a first (sample) axis; got a 0-d array")
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X has shape {X.shape} and y has shape {y.shape}: their first dimensions differ"
        )
    return _generate(X, y, batch_size, shuffle, rng)


def _generate(X, y, batch_size, shuffle, rng):
    n = X.shape[0]
    if shuffle:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        order = gen.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield X[idx], y[idx]
    else:
        for start in range(0, n, batch_size):
            yield X[start:start + batch_size], y[start:start + batch_size]
