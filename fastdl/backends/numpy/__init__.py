"""The NumPy backend: the reference every other backend is tested against.

``core`` holds the core kernels (contract in :mod:`fastdl.backends`),
``elementwise`` the activations and pointwise losses (its docstring is that
family's contract), ``optim`` the optimizer steps.  Plain, obviously correct
NumPy; also the fallback when no compiled backend loads.
"""
