"""Train the digits MLP with fastdl, then time one training step five ways.

``run_train_demo()`` trains a softmax MLP (64 -> 128 -> 10, ReLU, Adam, batch
64) on scikit-learn's bundled 8x8 digits, with a tqdm progress bar showing
loss and training accuracy (plain lines when tqdm is missing), and prints the
accuracy on the training images and on the held-out quarter it never trained
on.  Then it times the same training step -- forward, loss,
backward, Adam update, float32, same batches -- for:

* fastdl's layer API with the "auto" backend,
* :func:`fastdl.compile_step`: the same model, loss and optimizer as one
  compiled call per step,
* fastdl's layer API with the pure-NumPy reference backend
  (``use_backend("numpy")``),
* a plain hand-written NumPy MLP (the code a NumPy user would write),
* PyTorch eager (when installed),

all with the same thread count (fastdl, BLAS through threadpoolctl when
available, torch), and prints per-step medians and each one's speed-up over
the hand-written NumPy MLP (the time of NumPy's step divided by its own).
Needs scikit-learn for the data (``pip install "fastdl[examples]"``; without
it the command says so in one line and exits with status 1); runs in well
under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import numpy as np

from . import _backend
from . import data, layers, losses, optim

_HIDDEN = 128
#: What ``python -m fastdl demo`` prints, and exits 1 on, without scikit-learn.
MISSING_SKLEARN = ('fastdl demo: the digits data comes with scikit-learn, which is not '
                   'installed; install it with: pip install "fastdl[examples]"')


def _have_sklearn():
    try:
        import sklearn.datasets  # noqa: F401
        import sklearn.model_selection  # noqa: F401
    except ImportError:
        return False
    return True


def _load_digits(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def _model(seed):
    return layers.Sequential(layers.Affine(64, _HIDDEN, rng=seed), layers.ReLU(),
                             layers.Affine(_HIDDEN, 10, rng=seed + 1))


def _progress(iterable, total, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(iterable, total=total, unit="step", leave=True)


def train(epochs, batch_size, lr, seed, *, progress=True):
    """Train the MLP; returns (model, training accuracy, held-out accuracy, final epoch loss).

    Both accuracies are of the trained model: on the training images, and on
    the held-out quarter of the digits it never saw.
    """
    X_tr, X_te, y_tr, y_te = _load_digits(seed)
    model = _model(seed)
    crit = losses.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-len(X_tr) // batch_size)
    bar = _progress(range(epochs * steps_per_epoch), epochs * steps_per_epoch, progress)
    loss_avg = float("nan")
    for epoch in range(epochs):
        total, correct, seen = 0.0, 0, 0
        for xb, yb in data.batches(X_tr, y_tr, batch_size, rng=rng):
            logits = model.forward(xb)
            correct += int(np.sum(logits.argmax(1) == yb))
            total += float(crit.forward(logits, yb)) * len(xb)
            seen += len(xb)
            model.backward(crit.backward(), input_grad=False)
            opt.step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.4f}",
                                train_acc=f"{correct / seen:.3f}", refresh=False)
        loss_avg = total / seen
        if bar is None and progress:
            print(f"epoch {epoch + 1:2d}/{epochs}: loss {loss_avg:.4f}, "
                  f"training accuracy during the epoch {correct / seen:.4f}")
    if bar is not None:
        bar.close()
    train_acc = float(np.mean(model.forward(X_tr).argmax(1) == y_tr))
    test_acc = float(np.mean(model.forward(X_te).argmax(1) == y_te))
    return model, train_acc, test_acc, loss_avg


# ---------------------------------------------------------------------------
# timed variants: each returns a function doing one training step on (x, y)
# ---------------------------------------------------------------------------

def _fastdl_step(seed, lr):
    model = _model(seed)
    crit = losses.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=lr)

    def step(x, y):
        crit.forward(model.forward(x), y)
        model.backward(crit.backward(), input_grad=False)
        opt.step()
    return step


def _compiled_fastdl_step(seed, lr):
    """The same step as :func:`_fastdl_step`, as one call: :func:`fastdl.compile_step`."""
    from ._compiled_step import compile_step

    model = _model(seed)
    return compile_step(model, losses.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=lr))


def _numpy_step(seed, lr):
    """The MLP step as plain NumPy: cs231n-style forward/backward, Adam."""
    rng = np.random.default_rng(seed)
    b1_ = 1 / np.sqrt(64)
    b2_ = 1 / np.sqrt(_HIDDEN)
    params = [rng.uniform(-b1_, b1_, (_HIDDEN, 64)).astype(np.float32),
              rng.uniform(-b1_, b1_, _HIDDEN).astype(np.float32),
              rng.uniform(-b2_, b2_, (10, _HIDDEN)).astype(np.float32),
              rng.uniform(-b2_, b2_, 10).astype(np.float32)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = [0]
    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def step(x, y):
        W1, b1, W2, b2 = params
        h = x @ W1.T + b1
        a = np.maximum(h, 0)
        z = a @ W2.T + b2
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        n = len(y)
        _ = -np.mean(np.log(p[np.arange(n), y]))
        dz = p
        dz[np.arange(n), y] -= 1
        dz /= n
        grads = [None, None, dz.T @ a, dz.sum(0)]
        da = dz @ W2
        da[h <= 0] = 0
        grads[0] = da.T @ x
        grads[1] = da.sum(0)
        t[0] += 1
        for k in range(4):
            m[k] = beta1 * m[k] + (1 - beta1) * grads[k]
            v[k] = beta2 * v[k] + (1 - beta2) * grads[k] ** 2
            mhat = m[k] / (1 - beta1 ** t[0])
            vhat = v[k] / (1 - beta2 ** t[0])
            params[k] -= lr * mhat / (np.sqrt(vhat) + eps)
    return step


def _torch_step(seed, lr, threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, _HIDDEN), torch.nn.ReLU(),
                                torch.nn.Linear(_HIDDEN, 10))
    crit = torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    cache = {}

    def step(x, y):
        key = id(x)
        if key not in cache:  # convert each batch once, outside the timing
            cache[key] = (torch.from_numpy(x), torch.from_numpy(y))
        tx, ty = cache[key]
        opt.zero_grad()
        loss = crit(model(tx), ty)
        loss.backward()
        opt.step()
    return step, cache


def _time_steps(step, batches, repeat):
    """Median seconds per step over ``repeat`` passes through ``batches``."""
    for x, y in batches[:5]:  # warm-up: JIT compilation, buffer allocation
        step(x, y)
    per_step = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for x, y in batches:
            step(x, y)
        per_step.append((time.perf_counter() - t0) / len(batches))
    return statistics.median(per_step)


def _thread_limits(n):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext(), False
    return threadpool_limits(limits=n), True


def run_train_demo(argv=None) -> int:
    """Command-line entry point (``python -m fastdl demo`` wires to it).

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``): ``--epochs``, ``--batch-size``,
        ``--lr``, ``--threads``, ``--repeat``, ``--seed``, ``--no-progress``.

    Returns
    -------
    int
        Exit status: 0, or 1 when the held-out accuracy is below 96% or
        scikit-learn (the data) is not installed.
    """
    parser = argparse.ArgumentParser(
        prog="fastdl demo", description="Train the digits MLP with fastdl and time it.")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for every variant (default 1: at batch 64 a "
                             "second thread costs more than it saves)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes over the batches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not _have_sklearn():
        print(MISSING_SKLEARN, file=sys.stderr)
        return 1

    threads = max(1, min(args.threads, _backend._config.default_num_threads()))
    old_threads = _backend.get_num_threads()
    _backend.set_num_threads(threads)
    limits, have_limits = _thread_limits(threads)
    try:
        with limits:
            t0 = time.perf_counter()
            _, train_acc, acc, loss = train(args.epochs, args.batch_size, args.lr,
                                            args.seed, progress=not args.no_progress)
            print(f"digits MLP 64-{_HIDDEN}-10, {args.epochs} epochs "
                  f"({time.perf_counter() - t0:.1f} s): final training loss {loss:.4f}")
            print(f"  training accuracy {train_acc:.4f} (images it trained on)")
            print(f"  held-out accuracy {acc:.4f} (a quarter of the digits, never "
                  "trained on)")

            X_tr, _, y_tr, _ = _load_digits(args.seed)
            batches = list(data.batches(X_tr, y_tr.astype(np.int64), args.batch_size,
                                        rng=np.random.default_rng(args.seed)))
            batches = [b for b in batches if len(b[0]) == args.batch_size]
            rows = []
            rows.append(("fastdl layers (auto)", _time_steps(_fastdl_step(args.seed, args.lr),
                                                             batches, args.repeat)))
            try:
                compiled = _compiled_fastdl_step(args.seed, args.lr)
            except ImportError as exc:  # no SciPy and NumPy's BLAS not callable
                print(f"(fastdl compile_step row skipped: {exc})")
            else:
                rows.append(("fastdl compile_step", _time_steps(compiled, batches,
                                                                args.repeat)))
            with _backend.use_backend("numpy"):
                rows.append(("fastdl (numpy backend)",
                             _time_steps(_fastdl_step(args.seed, args.lr), batches, args.repeat)))
            rows.append(("hand-written NumPy", _time_steps(_numpy_step(args.seed, args.lr),
                                                           batches, args.repeat)))
            torch_step = _torch_step(args.seed, args.lr, threads)
            if torch_step is not None:
                rows.append(("PyTorch eager", _time_steps(torch_step[0], batches, args.repeat)))
    finally:
        _backend.set_num_threads(old_threads)

    base = dict(rows)["hand-written NumPy"]
    note = "" if have_limits else " (threadpoolctl missing: BLAS threads not limited)"
    print(f"\nper training step, batch {args.batch_size}, float32, {threads} thread(s){note}:")
    print(f"  {'variant':<24}{'time/step':>12}{'speed-up over hand-written NumPy':>34}")
    for name, sec in rows:
        print(f"  {name:<24}{sec * 1e6:>10.1f} us{base / sec:>33.2f}x")
    if torch_step is None:
        print("  (PyTorch not installed: its row is skipped)")
    return 0 if acc >= 0.96 else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_train_demo())
