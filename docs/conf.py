"""Sphinx configuration of fastdl's documentation (the API reference and the contract).

Build: ``python -m sphinx -W -b html docs build/docs`` (needs the ``docs``
extra: ``pip install -e ".[docs]"``).  autodoc imports the fastdl of this
checkout; the functional reference is generated from the op table by the
local extension ``_ext/fastdl_docs.py``.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))  # document this checkout's fastdl

import fastdl  # noqa: E402

project = "fastdl"
author = "the fastdl developers"
copyright = "fastdl developers"  # noqa: A001 (Sphinx's name)
release = fastdl.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # numpydoc-style docstrings, part of Sphinx
    "myst_parser",  # the markdown pages: docs/API.md, the changelog
    "fastdl_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]

# The docstrings are numpydoc; types stay text (no cross-reference per type name).
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_preprocess_types = False
napoleon_use_rtype = False
napoleon_use_param = False  # a plain field list: no cross-reference per parameter type

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "none"
autodoc_preserve_defaults = True  # signatures show `dtype=np.float32`, as written

# Every link to a documented Python object must resolve.  Not documented here:
# private names (fastdl._core, layers._Elementwise ...) and the backends
# package; other projects' objects (no intersphinx: the build stays offline);
# and the free-text types of parameter and attribute fields ("ndarray,
# shape (N, C)"), which are words, not dotted names.
nitpicky = True
nitpick_ignore_regex = [
    ("py:.*", r"(.*\.)?_.*|fastdl\.backends(\..*)?"),
    ("py:.*", r"(numpy|torch|os|collections)\..*"),
    ("py:class", r"[^.]*"),
]
nitpick_ignore = [
    # set_num_threads' docstring names the private fastdl._backend.forked_child.
    ("py:func", "forked_child"),
]

# Docstrings write absolute values as |d|: the text it is, not a substitution.
rst_prolog = r"""
.. |d| replace:: \|d\|
"""

myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"fastdl {release}"
html_static_path = []
