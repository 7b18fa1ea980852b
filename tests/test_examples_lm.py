"""The language-model examples run (small settings) and learn."""

import math
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if not EXAMPLES.is_dir():
    pytest.skip("examples/ not present (installed package)", allow_module_level=True)
sys.path.insert(0, str(EXAMPLES))


def test_stdlib_corpus_is_offline_text_with_a_large_vocabulary():
    import stdlib_corpus

    X, y, vocab = stdlib_corpus.load(context=2, limit_files=60)
    assert X.shape == (y.size, 2) and y.size > 20000
    assert vocab[0] == stdlib_corpus.UNK and stdlib_corpus.EOS in vocab
    assert 0 <= X.min() and X.max() < len(vocab) and y.max() < len(vocab)
    # The context of token i is the tokens before it.
    assert (X[1:, -1] == y[:-1]).all()


def test_lm_stdlib_docstrings_learns():
    import lm_stdlib_docstrings

    result = lm_stdlib_docstrings.main(limit_files=60, max_tokens=30000, epochs=2,
                                       hidden=64, batch_size=512, verbose=False)
    first, last = result["history"]
    assert last < first < result["uniform"] - 1.0, result["history"]
    assert math.isfinite(last)


def test_torch_lm_heads_train_in_lockstep():
    """fastdl.torch's fused head gives PyTorch's losses, step by step."""
    pytest.importorskip("torch")
    import torch_lm_stdlib

    result = torch_lm_stdlib.main(limit_files=30, max_tokens=8000, batch_size=256,
                                  max_steps=12, threads=1, verbose=False)
    ours = result["losses"]["fastdl.torch"]
    assert len(ours) == 12 and ours[-1] < ours[0] - 0.5, ours
    for name in ("torch linear_cross_entropy", "torch linear + cross_entropy"):
        theirs = result["losses"][name]
        assert max(abs(a - b) / abs(b) for a, b in zip(ours, theirs)) < 1e-4, name
