"""fastdl for PyTorch: fastdl's kernels as torch ops (the optional extra ``fastdl[torch]``).

``fastdl.torch.<op>`` has the signature of ``torch.nn.functional.<op>``
(``torch.logsumexp`` for :func:`logsumexp`) and takes CPU tensors of
float32 or float64; autograd, ``torch.compile`` and
``torch.library.opcheck`` work through the custom ops ``torch.ops.fastdl.*``.
:mod:`fastdl.torch.nn` holds the module twins.  ``import fastdl`` never
imports torch; this package does, and without torch every name it would
define raises ImportError naming the extra.

Examples
--------
>>> import torch, fastdl.torch as ft
>>> x = torch.randn(8, 5, requires_grad=True)
>>> loss = ft.cross_entropy(ft.relu(x), torch.randint(0, 5, (8,)))
>>> loss.backward()
>>> x.grad.shape
torch.Size([8, 5])
"""

try:
    import torch
except ImportError as exc:  # torch is optional: every use says so
    _missing = exc
    # The import itself succeeds, so pytest can load this package's conftest
    # (which skips the doctests) where torch is not installed.
    def __getattr__(name):
        raise ImportError("fastdl.torch needs PyTorch: pip install 'fastdl[torch]' "
                          "(or install torch)") from _missing

    __all__ = []
else:
    if not hasattr(torch.library, "register_autograd"):  # pragma: no cover
        raise ImportError(f"fastdl.torch needs torch >= 2.4 (torch.library.custom_op); "
                          f"this is torch {torch.__version__}")

    from . import functional, nn
    from .functional import *  # noqa: F401,F403

    __all__ = functional.__all__ + ["functional", "nn"]
