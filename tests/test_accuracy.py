"""float32 accuracy against float64 references, and against PyTorch's float32.

The contract: for C up to 100,000 classes, float32 logsumexp, log_softmax and
cross-entropy stay within 2e-6 relative error of a float64 computation on the
same (exactly representable) inputs, and no worse than PyTorch's float32.
"""

import numpy as np
import pytest

import fastdl

REL = 2e-6


def _inputs(C, rng, N=6):
    # Wide logits with a large common offset: the hard case for the shift.
    return (rng.standard_normal((N, C)) * 8 + 300).astype(np.float32)


def _rel_err(got, ref):
    got = np.asarray(got, np.float64)
    return float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-30)))


@pytest.mark.parametrize("C", [10, 1000, 100_000])
def test_float32_accuracy(C, backend, rng):
    x = _inputs(C, rng)
    x64 = x.astype(np.float64)
    lse64 = fastdl.logsumexp(x64, backend="numpy")
    ls64 = x64 - lse64[:, None]
    target = rng.integers(0, C, x.shape[0])
    ce64 = fastdl.cross_entropy(x64, target, reduction="none", backend="numpy")

    assert _rel_err(fastdl.logsumexp(x, backend=backend), lse64) <= REL
    # log_softmax entries are compared with an absolute floor of one float32
    # ulp of the row's log-sum term: entries near 0 carry that much rounding.
    ls = fastdl.log_softmax(x, backend=backend).astype(np.float64)
    floor = np.spacing(np.float32(np.abs(lse64).max())).astype(np.float64)
    assert np.all(np.abs(ls - ls64) <= REL * np.abs(ls64) + floor)
    assert _rel_err(fastdl.cross_entropy(x, target, reduction="none", backend=backend),
                    ce64) <= REL
    assert _rel_err(fastdl.cross_entropy(x, target, backend=backend), ce64.mean()) <= REL


@pytest.mark.parametrize("C", [1000, 100_000])
def test_float32_no_worse_than_torch(C, backend, rng):
    torch = pytest.importorskip("torch")
    x = _inputs(C, rng)
    x64 = x.astype(np.float64)
    target = rng.integers(0, C, x.shape[0])
    ref_lse = fastdl.logsumexp(x64, backend="numpy")
    ref_ce = fastdl.cross_entropy(x64, target, reduction="none", backend="numpy")
    tx = torch.from_numpy(x)
    torch_lse = _rel_err(torch.logsumexp(tx, -1).numpy(), ref_lse)
    torch_ce = _rel_err(torch.nn.functional.cross_entropy(
        tx, torch.from_numpy(target), reduction="none").numpy(), ref_ce)
    ours_lse = _rel_err(fastdl.logsumexp(x, backend=backend), ref_lse)
    ours_ce = _rel_err(fastdl.cross_entropy(x, target, reduction="none", backend=backend), ref_ce)
    # "No worse" up to one float32 rounding of the result (6e-8 relative).
    assert ours_lse <= max(torch_lse, 6e-8)
    assert ours_ce <= max(torch_ce, 6e-8)


def test_float64_accuracy_against_mpmath(backend, rng):
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    x = rng.standard_normal((3, 50)) * 30
    got = fastdl.logsumexp(x, backend=backend)
    for row, value in zip(x, got):
        exact = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
        assert abs(value - float(exact)) <= 1e-13 * abs(float(exact))
    sm = fastdl.softmax(x, backend=backend)
    for row, probs in zip(x, sm):
        total = mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row)
        exact = [float(mpmath.exp(mpmath.mpf(float(v))) / total) for v in row]
        np.testing.assert_allclose(probs, exact, rtol=1e-12, atol=1e-300)
