"""A word-level next-word corpus that ships with Python: the standard library's docstrings.

Every module, class and function docstring of the standard library's own
``.py`` files (tests, IDLE and lib2to3 left out), lower-cased and split into
words and punctuation, with ``</s>`` after each docstring.  Words seen fewer
than ``min_count`` times become ``<unk>``.  About 320,000 tokens and, with
``min_count=2``, a vocabulary of about 6,100 words (CPython 3.11).  Offline:
nothing is downloaded.

Used by ``lm_stdlib_docstrings.py`` (fastdl's layer API) and
``torch_lm_stdlib.py`` (PyTorch with and without fastdl.torch).
"""

import ast
import collections
import re
import sysconfig
from pathlib import Path

import numpy as np

UNK, EOS = "<unk>", "</s>"
_SKIP = {"test", "tests", "site-packages", "idlelib", "lib2to3"}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[.,;:()]")


def stdlib_files(limit=None):
    """The standard library's .py files (sorted, so the corpus is reproducible)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py")
                   if not _SKIP & set(p.relative_to(root).parts))
    return files[:limit]


def docstring_words(files):
    """The words of every docstring in ``files``, each docstring ended by EOS."""
    words = []
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    words += _WORD.findall(doc.lower())
                    words.append(EOS)
    return words


def load(context=3, min_count=2, limit_files=None):
    """``(contexts, targets, vocab)``: each token with the ``context`` tokens before it.

    contexts : int64 (N, context) word ids (the start is padded with EOS);
    targets : int64 (N,); vocab : list of words, ``vocab[i]`` for id i
    (id 0 is UNK).
    """
    words = docstring_words(stdlib_files(limit_files))
    counts = collections.Counter(words)
    vocab = [UNK] + sorted(w for w, c in counts.items() if c >= min_count and w != UNK)
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.array([index.get(w, 0) for w in words], np.int64)
    padded = np.concatenate([np.full(context, index[EOS], np.int64), ids])
    contexts = np.stack([padded[k:k + ids.size] for k in range(context)], axis=1)
    return contexts, ids, vocab
