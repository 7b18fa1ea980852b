"""Logistic regression on scikit-learn's breast-cancer data, trained with fastdl.

One ``Affine(30, 1)`` layer and ``BCEWithLogitsLoss`` (the stable
``log sigma(x) = -softplus(-x)`` form), Adam, mini-batches; held-out accuracy
is printed next to scikit-learn's ``LogisticRegression`` on the same split.

Run: ``python examples/logistic_regression_breast_cancer.py``
"""

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from fastdl import data, layers, losses, optim


def main(epochs=60, batch_size=32, lr=1e-2, seed=0, verbose=True):
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed,
                                              stratify=y)
    mean, std = X_tr.mean(0), X_tr.std(0)
    X_tr = ((X_tr - mean) / std).astype(np.float32)
    X_te = ((X_te - mean) / std).astype(np.float32)
    T_tr = y_tr.astype(np.float32)[:, None]

    model = layers.Affine(X.shape[1], 1, rng=seed)
    crit = losses.BCEWithLogitsLoss()
    opt = optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        total = 0.0
        for xb, tb in data.batches(X_tr, T_tr, batch_size, rng=rng):
            total += float(crit.forward(model.forward(xb), tb)) * len(xb)
            model.backward(crit.backward(), input_grad=False)
            opt.step()
        if verbose and (epoch + 1) % 20 == 0:
            print(f"epoch {epoch + 1}: mean training loss {total / len(X_tr):.4f}")
    # sigma(z) > 0.5 exactly when the logit z > 0.
    acc = float(np.mean((model.forward(X_te).ravel() > 0) == (y_te == 1)))
    result = {"test_accuracy": acc}
    try:
        from sklearn.linear_model import LogisticRegression
        ref = LogisticRegression(max_iter=5000).fit(X_tr, y_tr)
        result["sklearn_accuracy"] = float(ref.score(X_te, y_te))
    except Exception:  # pragma: no cover - reference only
        pass
    if verbose:
        print(f"held-out accuracy {acc:.4f}"
              + (f" (scikit-learn LogisticRegression: {result['sklearn_accuracy']:.4f})"
                 if "sklearn_accuracy" in result else ""))
    return result


if __name__ == "__main__":
    main()
