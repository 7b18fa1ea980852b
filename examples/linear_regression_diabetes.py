"""Linear regression on scikit-learn's diabetes data, trained with fastdl.

Mini-batch SGD (with momentum) does the bulk of the fitting; then the batch
grows to the whole training set, because SGD's noise floor scales with the
learning rate and only full-batch gradient descent converges to the exact
minimiser.  The result is compared with the closed-form least-squares
solution (``pinv`` of the design matrix, i.e. the normal equations): the
relative difference reaches 1e-6 and below.

Run: ``python examples/linear_regression_diabetes.py``
"""

import numpy as np
from sklearn.datasets import load_diabetes

from fastdl import data, layers, losses, optim


def closed_form(X, y):
    """[w..., b] minimising ||X w + b - y||^2 (normal equations via pinv)."""
    A = np.c_[X, np.ones(len(X))]
    return np.linalg.pinv(A) @ y


def main(sgd_epochs=30, max_full_steps=2000, tol=1e-8, seed=0, verbose=True):
    X, y = load_diabetes(return_X_y=True)
    # Standardise: the problem's condition number drops to ~470, so plain
    # gradient descent converges in a few hundred steps.
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    Y = y[:, None]
    w_star = closed_form(X, y)

    model = layers.Affine(X.shape[1], 1, dtype=np.float64, rng=seed)
    crit = losses.MSELoss()
    rng = np.random.default_rng(seed)

    def rel_error():
        w = np.r_[model.W.value.ravel(), model.b.value]
        return float(np.linalg.norm(w - w_star) / np.linalg.norm(w_star))

    # Phase 1: mini-batch SGD with momentum.
    opt = optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for epoch in range(sgd_epochs):
        for xb, yb in data.batches(X, Y, 32, rng=rng):
            crit.forward(model.forward(xb), yb)
            model.backward(crit.backward(), input_grad=False)
            opt.step()
    after_sgd = rel_error()

    # Phase 2: the whole set as one batch, heavy-ball momentum tuned from the
    # Hessian's extreme eigenvalues L, mu (2/N A^T A for the mean squared
    # error): lr = 4 / (sqrt L + sqrt mu)^2, momentum = ((sqrt k - 1)/(sqrt k + 1))^2.
    A = np.c_[X, np.ones(len(X))]
    ev = np.linalg.eigvalsh(2.0 * A.T @ A / len(A))
    L, mu = ev[-1], ev[0]
    kappa = L / mu
    opt = optim.SGD(model.parameters(), lr=4.0 / (np.sqrt(L) + np.sqrt(mu)) ** 2,
                    momentum=((np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)) ** 2)
    steps = 0
    while steps < max_full_steps and rel_error() > tol:
        crit.forward(model.forward(X), Y)
        model.backward(crit.backward(), input_grad=False)
        opt.step()
        steps += 1
    result = {"rel_error_after_sgd": after_sgd, "full_batch_steps": steps,
              "rel_error": rel_error(),
              "mse": float(crit.forward(model.forward(X), Y)),
              "mse_closed_form": float(np.mean((np.c_[X, np.ones(len(X))] @ w_star - y) ** 2))}
    if verbose:
        print(f"after {sgd_epochs} epochs of mini-batch SGD: relative error {after_sgd:.2e}")
        print(f"after {steps} full-batch steps: relative error {result['rel_error']:.2e} "
              f"(closed form via pinv); MSE {result['mse']:.6f} vs {result['mse_closed_form']:.6f}")
    return result


if __name__ == "__main__":
    main()
