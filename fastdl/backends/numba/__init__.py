"""The Numba backend: kernels compiled at first use and cached on disk.

- ``_jit``: the JIT plumbing (jit options, the on-disk cache, serial and
  parallel twins, threading) and the vectorisable exp/log1p/expm1/tanh;
- ``core``: the row kernels and affine (contract in :mod:`fastdl.backends`);
- ``elementwise``: one loop per kind bound to each op's scalar;
- ``optim``: the SGD and Adam steps.

Importing this package compiles nothing; a kernel compiles (or loads from
the cache) on its first call, see :func:`fastdl.warmup`.
"""
