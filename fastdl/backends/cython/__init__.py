"""The Cython backend: kernels compiled ahead of time by ``setup.py``.

Its sources are the top-level ``kernels/`` folder: each ``kernels/<stem>.pyx``
(``elementwise.pyx`` expanded from ``elementwise.pyx.tp`` with the op table)
builds into ``fastdl.backends.cython._<stem>`` and, without OpenMP, into
``_<stem>_serial``; ``kernels/_fastexp.h`` holds the SIMD exp and row loops
they share.  The Python modules here (``core``, ``elementwise``, ``optim``)
implement the kernel contract on top of those, and ``_select`` picks the
parallel or serial build per call.
"""
