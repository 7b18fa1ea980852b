"""Every public function documents exactly its own parameters (numpydoc).

For each function in ``fastdl.__all__`` (and the layer/optimizer/data modules'
public functions): a docstring with a one-line summary and, when the
signature has parameters, a numpydoc ``Parameters`` section naming exactly
those parameters, in signature order.  ``*args``/``**kwargs`` are written
``*inputs`` / ``**kwargs`` as numpydoc does.  A function without parameters
must not have a Parameters section.  (STUMPY checks the same in CI.)
"""

from __future__ import annotations

import inspect
import re

import pytest

import fastdl

_SECTION = re.compile(r"^(\s*)([A-Z][A-Za-z ]+)\n\1-{3,}\s*$", re.M)
_PARAM_LINE = re.compile(r"^(\*{0,2}[A-Za-z_][\w]*(?:\s*,\s*\*{0,2}[A-Za-z_][\w]*)*)\s*(?::.*)?$")


def _public_functions():
    from fastdl._warmup import warmup

    seen = set()
    for name in fastdl.__all__:
        obj = getattr(fastdl, name)
        if inspect.isfunction(obj) and obj not in seen:
            seen.add(obj)
            yield name, obj
    if warmup not in seen:  # until fastdl/__init__.py exports it
        yield "warmup", warmup


def _signature_names(fn):
    names = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            names.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            names.append("**" + p.name)
        else:
            names.append(p.name)
    return names


def _sections(doc):
    """{section title: body text} of a cleaned numpydoc docstring."""
    matches = list(_SECTION.finditer(doc))
    out = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(doc)
        out[m.group(2).strip()] = doc[m.end():end]
    return out


def documented_parameters(doc):
    """Names in the Parameters section, in order (None when there is none)."""
    body = _sections(doc).get("Parameters")
    if body is None:
        return None
    names = []
    for line in body.splitlines():
        if not line.strip() or line[:1].isspace():
            continue  # blank or a description line (indented under its name)
        m = _PARAM_LINE.match(line.strip())
        if m:
            names.extend(n.strip() for n in m.group(1).split(","))
    return names


def test_parser_reads_numpydoc():
    doc = inspect.cleandoc(
        """Summary.

        Parameters
        ----------
        x, y : ndarray
            Inputs.
        axis : int, optional
            Axis.
        *inputs : ndarray
        **kwargs
            Anything.

        Returns
        -------
        out : ndarray
        """
    )
    assert documented_parameters(doc) == ["x", "y", "axis", "*inputs", "**kwargs"]
    assert documented_parameters("Summary only.") is None


PUBLIC = list(_public_functions())


def test_public_functions_found():
    names = [n for n, _ in PUBLIC]
    assert "softmax" in names and "cross_entropy_with_grad" in names


@pytest.mark.parametrize("name,fn", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_numpydoc_parameters_match_signature(name, fn):
    doc = inspect.getdoc(fn)
    assert doc, f"fastdl.{name} has no docstring"
    summary = doc.strip().splitlines()[0]
    assert summary.strip(), f"fastdl.{name}: docstring must start with a summary line"
    expected = _signature_names(fn)
    documented = documented_parameters(doc)
    if not expected:
        assert documented is None, f"fastdl.{name} takes no parameters but documents {documented}"
        return
    assert documented is not None, (
        f"fastdl.{name}{inspect.signature(fn)} has no numpydoc Parameters section"
    )
    assert documented == expected, (
        f"fastdl.{name}: Parameters section lists {documented}, signature has {expected}"
    )
