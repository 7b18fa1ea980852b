"""The NumPy baselines, under the name ``bench/`` has imported them by.

The benchmark report itself is the package :mod:`fastdl._bench`
(``python -m fastdl bench``); the baselines are :mod:`fastdl._bench.baselines`.
"""

from ._bench.baselines import *  # noqa: F401,F403
from ._bench.baselines import __all__  # noqa: F401
