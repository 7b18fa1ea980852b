"""Mini-batch iteration over in-memory datasets."""

from __future__ import annotations

import numpy as np

from ._linear_ce import _positive_int

__all__ = ["batches", "DEFAULT_SEED"]

#: The seed of the shuffle when ``batches`` gets no ``rng``.
DEFAULT_SEED = 0


def batches(X, y, batch_size, *, shuffle=True, rng=None, drop_last=False):
    """Iterate over ``(X_batch, y_batch)`` mini-batches along the first axis.

    The order is deterministic unless asked otherwise: without ``rng`` the
    shuffle is seeded with :data:`DEFAULT_SEED`, so a script gives the same
    batches on every run.  That also means the same order on every call:
    for a new order each epoch, create one generator before the epoch loop
    and pass it to every call (reproducible too)::

        gen = np.random.default_rng(0)
        for epoch in range(10):
            for xb, yb in batches(X, y, 64, rng=gen):
                ...

    Parameters
    ----------
    X : ndarray, shape (N, ...)
        Inputs.
    y : ndarray, shape (N, ...)
        Targets, in the same order as ``X``.
    batch_size : int
        Rows per batch, >= 1.  The last batch holds the remaining
        ``N % batch_size`` rows when that is not 0, unless ``drop_last``.
    shuffle : bool, default True
        Visit the rows in a random order (a permutation drawn from ``rng``
        per call); False keeps the dataset's order and ignores ``rng``.
    rng : numpy.random.Generator, int or None, optional
        Source of the permutation: a generator (its state advances, so
        successive calls give successive permutations) or a seed.  None
        means the seed :data:`DEFAULT_SEED` (the same permutation on every
        call), not fresh entropy; pass ``np.random.default_rng()`` for a
        non-reproducible order.
    drop_last : bool, default False
        Leave out the last, smaller batch when ``N`` is not a multiple of
        ``batch_size`` (PyTorch ``DataLoader``'s ``drop_last``), so every
        batch has exactly ``batch_size`` rows; with ``N < batch_size``
        nothing is yielded.

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

    Notes
    -----
    Why a fixed default seed rather than fresh entropy or no shuffle:
    shuffling stays the default (mini-batch SGD needs it, and existing
    training loops rely on it), and a run without an explicit seed is still
    reproducible.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl.data import batches
    >>> X = np.arange(10).reshape(5, 2); y = np.arange(5)
    >>> [yb.tolist() for _, yb in batches(X, y, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    >>> [yb.tolist() for _, yb in batches(X, y, 2, shuffle=False, drop_last=True)]
    [[0, 1], [2, 3]]
    >>> a = [yb.tolist() for _, yb in batches(X, y, 2)]
    >>> a == [yb.tolist() for _, yb in batches(X, y, 2)]      # no rng: DEFAULT_SEED
    True
    >>> sorted(sum(a, []))
    [0, 1, 2, 3, 4]
    """
    X = np.asarray(X)
    y = np.asarray(y)
    batch_size = _positive_int(batch_size, "batch_size")
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError("X and y need a first (sample) axis; got a 0-d array")
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X has shape {X.shape} and y has shape {y.shape}: their first dimensions differ"
        )
    n = X.shape[0]
    # The rows of full batches only, with drop_last.
    stop = n - n % batch_size if drop_last else n
    order = None
    if shuffle:
        # Drawn now, not at the first next(): the generator's state then
        # advances once per call, even for an iterator never consumed.
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(
            DEFAULT_SEED if rng is None else rng)
        order = gen.permutation(n)
    return _generate(X, y, batch_size, order, stop)


def _generate(X, y, batch_size, order, stop):
    if order is not None:
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            yield X[idx], y[idx]
    else:
        for start in range(0, stop, batch_size):
            yield X[start:start + batch_size], y[start:start + batch_size]
