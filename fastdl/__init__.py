"""fastdl: fast, trustworthy CPU kernels for the core math of deep learning.

Every function takes NumPy arrays, validates them, and runs the kernel of the
backend in force: ``"cython"``, ``"numba"`` or the ``"numpy"`` reference
(``"auto"``, the default, picks the fastest compiled one per operation).
"""

from ._version import __version__
from ._backend import (
    available_backends,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    unavailable_backends,
    use_backend,
)
from . import _core, _linear_ce, _optim_functional
from ._core import *  # noqa: F401,F403  (affine, the row ops, cross-entropy)
from ._info import show_config
from ._warmup import warmup
from . import _activations, _loss_functions
from ._activations import *  # noqa: F401,F403  (the activations of the op table)
from ._loss_functions import *  # noqa: F401,F403  (the pointwise losses and entropy)
from ._linear_ce import *  # noqa: F401,F403  (the fused linear + cross-entropy)
from ._gradcheck import GradcheckError, gradcheck
from ._optim_functional import *  # noqa: F401,F403  (sgd_step, adam_step)

# The layer API sits on top of the functional API above.
from . import data, layers, losses, optim  # noqa: E402
from ._compiled_step import compile_step  # noqa: E402

__all__ = [
    "__version__",
    "available_backends",
    "unavailable_backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "set_num_threads",
    "get_num_threads",
    "show_config",
    "warmup",
    "gradcheck",
    "GradcheckError",
    "layers",
    "losses",
    "optim",
    "data",
    "compile_step",
] + (_core.__all__ + _linear_ce.__all__ + _optim_functional.__all__ + _activations.__all__
     + _loss_functions.__all__)
