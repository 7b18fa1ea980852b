"""A next-token model with a large-vocabulary head that never builds the logits.

The "language" is a random Markov chain over V = 32000 tokens in 64 clusters:
a token's cluster decides its 4 possible successors.  The model sees a frozen
random embedding of the current token (its cluster's centroid plus noise),
runs ``Affine -> Tanh`` and predicts the next token with
``losses.LinearCrossEntropyLoss`` (the fused linear + cross-entropy head, with
PaLM's z-loss), trained with Adam.  A quarter of the positions are padding
(``ignore_index``), which costs the head no GEMM work.  The loss approaches
the chain's entropy; the head's extra memory per step is its chunk scratch
(64 MiB by default), not the (batch, V) logits and their gradient.

Run: ``python examples/lm_head_markov.py`` (``--small``: V = 4000, a few seconds).
"""

import argparse
import tracemalloc

import numpy as np

from fastdl import data, layers, losses, optim

PAD = -100


def make_chain(vocab, clusters, successors, rng):
    """Each token's cluster, and per cluster the successor tokens and their probabilities."""
    cluster = rng.integers(0, clusters, vocab)
    nxt = rng.integers(0, vocab, (clusters, successors))
    p = rng.dirichlet(np.ones(successors), clusters)
    return cluster, nxt, p


def sample(cluster, nxt, p, n, rng):
    """n (token, next token) pairs from the chain."""
    tok = rng.integers(0, cluster.shape[0], n)
    k = cluster[tok]
    choice = (rng.random(n)[:, None] > np.cumsum(p[k], axis=1)).sum(1)
    return tok, nxt[k, np.minimum(choice, nxt.shape[1] - 1)]


def main(vocab=32000, clusters=64, embed=32, hidden=64, successors=4, n_train=16384,
         epochs=4, batch_size=2048, lr=1e-2, seed=0, verbose=True):
    rng = np.random.default_rng(seed)
    cluster, nxt, p = make_chain(vocab, clusters, successors, rng)
    centroids = rng.standard_normal((clusters, embed))
    E = (centroids[cluster] + 0.3 * rng.standard_normal((vocab, embed))).astype(np.float32)
    tok, y = sample(cluster, nxt, p, n_train, rng)
    y[rng.random(n_train) < 0.25] = PAD  # padding positions
    X = E[tok]
    # The best possible loss: the chain's conditional entropy (nats), over tokens.
    floor = float(-(p * np.log(p)).sum(1)[cluster[tok]].mean())

    body = layers.Sequential(layers.Affine(embed, hidden, rng=seed), layers.Tanh())
    head = losses.LinearCrossEntropyLoss(hidden, vocab, rng=seed + 1, ignore_index=PAD,
                                         z_loss=1e-4)
    opt = optim.Adam(body.parameters() + head.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        for xb, yb in data.batches(X, y, batch_size, rng=rng):
            loss = head.forward(body.forward(xb), yb)
            body.backward(head.backward(), input_grad=False)
            opt.step()
            kept = int(np.count_nonzero(yb != PAD))
            total += float(loss) * kept
            count += kept
        history.append(total / count)
        if verbose:
            print(f"epoch {epoch + 1}: loss {history[-1]:.3f} (chain entropy {floor:.3f})")

    # One step's extra memory against the logits it never materialised.
    xb, yb = X[:batch_size], y[:batch_size]
    h = body.forward(xb)
    tracemalloc.start()
    head.forward(h, yb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    logits_bytes = batch_size * vocab * 4
    if verbose:
        print(f"head step peak extra memory {peak / 2**20:.1f} MiB; the ({batch_size}, "
              f"{vocab}) float32 logits alone would be {logits_bytes / 2**20:.0f} MiB")
    return {"history": history, "entropy": floor, "peak_bytes": peak,
            "logits_bytes": logits_bytes}


#: ``--small``: a vocabulary of 4000, 4096 pairs, three epochs (a few seconds; the tests).
SMALL = dict(vocab=4000, n_train=4096, epochs=3, batch_size=512)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true",
                        help="vocabulary 4000, 4096 pairs, 3 epochs: a few seconds")
    main(**(SMALL if parser.parse_args().small else {}))
