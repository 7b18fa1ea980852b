"""A word-level language model of the standard library's docstrings, on fastdl's layer API.

Next-word prediction from the three previous words (``stdlib_corpus.py``:
about 320,000 tokens, a vocabulary of about 6,100 words, offline).  The
model: a trainable word embedding (its gradient scattered from the body's
input gradient), ``Affine -> Tanh``, and the vocabulary-sized head
``losses.LinearCrossEntropyLoss``, the fused linear + cross-entropy that
never holds the (batch, V) logits.  Adam; the held-out loss (last 10% of
the tokens) and perplexity are printed per epoch, then the head's extra
memory per step against the logits it did not build.

Run: ``python examples/lm_stdlib_docstrings.py`` (about a minute on two cores).
"""

import math
import time
import tracemalloc

import numpy as np

from fastdl import data, layers, losses, optim

import stdlib_corpus


def main(context=3, embed=32, hidden=256, epochs=2, batch_size=1024, lr=3e-3, seed=0,
         limit_files=None, max_tokens=None, verbose=True):
    X, y, vocab = stdlib_corpus.load(context, limit_files=limit_files)
    if max_tokens is not None:
        X, y = X[:max_tokens], y[:max_tokens]
    split = int(0.9 * y.size)
    V = len(vocab)
    rng = np.random.default_rng(seed)
    E = layers.Parameter((0.1 * rng.standard_normal((V, embed))).astype(np.float32), "E")
    body = layers.Sequential(layers.Affine(context * embed, hidden, rng=seed), layers.Tanh())
    head = losses.LinearCrossEntropyLoss(hidden, V, rng=seed + 1)
    opt = optim.Adam([E] + body.parameters() + head.parameters(), lr=lr)

    def loss_of(ids, target):
        return float(head.forward(body.forward(E.value[ids].reshape(ids.shape[0], -1)), target))

    history = []
    gen = np.random.default_rng(seed)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        steps = 0
        for ids, target in data.batches(X[:split], y[:split], batch_size, rng=gen):
            head.forward(body.forward(E.value[ids].reshape(ids.shape[0], -1)), target)
            dx = body.backward(head.backward())
            E.grad[...] = 0
            np.add.at(E.grad, ids, dx.reshape(ids.shape[0], context, embed))
            opt.step()
            steps += 1
        step_ms = 1e3 * (time.perf_counter() - t0) / steps
        held_out = loss_of(X[split:], y[split:])
        history.append(held_out)
        if verbose:
            print(f"epoch {epoch + 1}: held-out loss {held_out:.3f} (perplexity "
                  f"{math.exp(held_out):.0f}; uniform over {V} words: {math.log(V):.3f}), "
                  f"{step_ms:.1f} ms/step")

    # One head step's extra memory against the logits it never materialised.
    h = body.forward(E.value[X[:batch_size]].reshape(batch_size, -1))
    tracemalloc.start()
    head.forward(h, y[:batch_size])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    logits_bytes = 2 * batch_size * V * 4  # the logits and their gradient
    if verbose:
        print(f"vocabulary {V} words, {y.size} tokens; head step peak extra memory "
              f"{peak / 2**20:.1f} MiB; the ({batch_size}, {V}) float32 logits and their "
              f"gradient would be {logits_bytes / 2**20:.0f} MiB")
    return {"history": history, "vocab": V, "uniform": math.log(V), "peak_bytes": peak,
            "logits_bytes": logits_bytes}


if __name__ == "__main__":
    main()
