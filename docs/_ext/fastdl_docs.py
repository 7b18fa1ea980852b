"""Sphinx directives that build fastdl's reference from the package itself.

``.. fastdl-functions::``
    autodoc entries for functions of ``fastdl``: those of the op table's
    kinds (``:kinds: activation pointwise_loss``; every public name each op
    yields, in table order, aliases as short "alias of" entries), those
    named (``:names: set_backend get_backend``), or with ``:rest:`` every
    name of ``fastdl.__all__`` not yet documented on the page (modules and
    ``:exclude:`` names aside).  A name the op table lists that ``fastdl``
    does not export is a warning, so a ``-W`` build fails on it.

``.. fastdl-if-importable:: module``
    The directive's content when ``module`` imports; otherwise a note
    saying what is missing.  With ``:requires: package``, a missing package
    or module is only noted, but a module that is there and fails to import
    is a warning.

A reference to ``pkg.module.name`` that is documented as ``pkg.name`` (a
re-export, the same object) resolves to it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import types

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

import fastdl
from fastdl import _ops

_DOCUMENTED = "fastdl_documented"


def _aliases():
    """``{alias name: name it stands for}`` from the op table (``swish`` -> ``silu``)."""
    out = {}
    for op in _ops.OPS:
        if not op.aliases:
            continue
        names = _ops.public_names(op)
        per_name = len(names) // (1 + len(op.aliases))
        for i, alias in enumerate(names[per_name:]):
            out[alias] = names[i % per_name]
    return out


def _entry(name, aliases):
    """The reST lines documenting ``fastdl.<name>``."""
    obj = getattr(fastdl, name)
    if name in aliases:
        return [f".. py:function:: fastdl.{name}{inspect.signature(obj)}", "",
                f"   Alias of :func:`fastdl.{aliases[name]}`.", ""]
    if inspect.isclass(obj):
        return [f".. autoclass:: fastdl.{name}", ""]
    if callable(obj):
        return [f".. autofunction:: fastdl.{name}", ""]
    return [f".. py:data:: fastdl.{name}", f"   :value: {obj!r}", ""]


class FastdlFunctions(SphinxDirective):
    has_content = False
    option_spec = {
        "kinds": lambda arg: (arg or "").split(),
        "names": lambda arg: (arg or "").split(),
        "exclude": lambda arg: (arg or "").split(),
        "rest": lambda arg: True,
    }

    def run(self):
        done = self.env.temp_data.setdefault(_DOCUMENTED, set())
        names = list(self.options.get("names", []))
        for kind in self.options.get("kinds", []):
            ops = _ops.of_kind(kind)
            if not ops:
                return [self.state.document.reporter.warning(
                    f"fastdl-functions: the op table has no kind {kind!r}", line=self.lineno)]
            names += [n for op in ops for n in _ops.public_names(op)]
        if "rest" in self.options:
            skip = done | set(names) | set(self.options.get("exclude", []))
            names += [n for n in fastdl.__all__ if n not in skip
                      and not isinstance(getattr(fastdl, n, None), types.ModuleType)]
        missing = [n for n in names if not hasattr(fastdl, n)]
        if missing:
            return [self.state.document.reporter.warning(
                f"fastdl-functions: fastdl does not export {missing}", line=self.lineno)]
        aliases = _aliases()
        lines = []
        for name in names:
            if name not in done:
                done.add(name)
                lines += _entry(name, aliases)
        return _parse(self, lines)


class FastdlIfImportable(SphinxDirective):
    has_content = True
    required_arguments = 1
    option_spec = {"requires": lambda arg: (arg or "").split()}

    def run(self):
        module = self.arguments[0]
        absent = [p for p in self.options.get("requires", []) + [module]
                  if importlib.util.find_spec(p) is None]
        if absent:
            note = nodes.note()
            note += nodes.paragraph(text=(
                f"{module} is not documented here: {', '.join(absent)} "
                f"{'is' if len(absent) == 1 else 'are'} not installed where these pages "
                "were built."))
            return [note]
        try:
            importlib.import_module(module)
        except Exception as exc:  # a module that is there must import
            return [self.state.document.reporter.warning(
                f"fastdl-if-importable: import {module} failed: {exc!r}", line=self.lineno)]
        return _parse(self, list(self.content))


def _parse(directive, lines):
    node = nodes.section()
    node.document = directive.state.document
    nested_parse_with_titles(directive.state, StringList(lines, source="fastdl_docs"), node)
    return node.children


def _reexported(app, env, node, contnode):
    """Resolve ``pkg.module.name`` to the documented ``pkg.name`` when it is the same object.

    ``fastdl.torch`` re-exports ``fastdl.torch.functional``'s functions and
    the reference documents them where users call them; a docstring linking
    the defining module's path still finds them.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if "." not in target and node.get("py:module"):  # a name of the docstring's module
        target = f"{node['py:module']}.{target}"
    module, _, name = target.rpartition(".")
    domain = env.get_domain("py")
    parent = module.rpartition(".")[0]
    while parent:
        documented = f"{parent}.{name}"
        if documented in domain.objects:
            try:
                same = (getattr(importlib.import_module(module), name)
                        is getattr(importlib.import_module(parent), name))
            except (ImportError, AttributeError):
                same = False
            if same:
                return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                           documented, node, contnode)
        parent = parent.rpartition(".")[0]
    return None


def setup(app):
    app.add_directive("fastdl-functions", FastdlFunctions)
    app.add_directive("fastdl-if-importable", FastdlIfImportable)
    app.connect("missing-reference", _reexported)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
