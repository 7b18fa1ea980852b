"""pytest: the doctests of fastdl.torch need torch, an optional extra.

Without torch they are not collected (importing these modules raises
ImportError by design); with it they run.  ``tests/test_fastdl_torch*.py``
skip on their own, and fail where FASTDL_REQUIRE_ORACLES names torch.
"""

try:
    import torch  # noqa: F401
except ImportError:
    collect_ignore_glob = ["*.py"]
