"""Learning-rate schedules: the same floats as torch.optim.lr_scheduler, epoch by epoch."""

import math

import numpy as np
import pytest

from fastdl import layers, optim

try:
    import torch
except ImportError:  # pragma: no cover - CI has torch
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

EPOCHS = 40


def _ours(kind, cls, lr, **kw):
    p = layers.Parameter(np.zeros(3))
    opt = optim.SGD([p], lr=lr) if kind == "sgd" else optim.Adam([p], lr=lr)
    return opt, getattr(optim, cls)(opt, **kw)


def _torch(kind, cls, lr, **kw):
    w = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([w], lr=lr) if kind == "sgd" else torch.optim.Adam([w], lr=lr)
    return opt, getattr(torch.optim.lr_scheduler, cls)(opt, **kw)


def _run(opt, sched, epochs=EPOCHS):
    """get_last_lr() and the optimizer's lr at each epoch (optimizer step, then schedule)."""
    out = []
    for _ in range(epochs):
        opt.step()
        lr = opt.lr if hasattr(opt, "lr") else opt.param_groups[0]["lr"]
        out.append((sched.get_last_lr()[0], lr))
        sched.step()
    return out


CASES = [
    ("StepLR", 0.1, dict(step_size=3)),
    ("StepLR", 0.05, dict(step_size=1, gamma=0.7)),
    ("StepLR", 1.0, dict(step_size=7, gamma=0.5)),
    ("CosineAnnealingLR", 0.1, dict(T_max=10)),
    ("CosineAnnealingLR", 0.3, dict(T_max=7, eta_min=0.01)),   # past T_max: climbs back
    ("CosineAnnealingLR", 1e-3, dict(T_max=1)),
    ("CosineAnnealingLR", 0.02, dict(T_max=13, eta_min=1e-4)),
]


@needs_torch
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("cls,lr,kw", CASES, ids=[f"{c}-{kw}" for c, _, kw in CASES])
def test_matches_torch_exactly(kind, cls, lr, kw):
    ours = _run(*_ours(kind, cls, lr, **kw))
    theirs = _run(*_torch(kind, cls, lr, **kw))
    assert ours == theirs            # the same floats, not approximately


def test_closed_forms():
    """Without torch too: the values follow the documented formulas."""
    opt, sched = _ours("sgd", "StepLR", 0.5, step_size=4, gamma=0.25)
    for epoch, (lr, opt_lr) in enumerate(_run(opt, sched, 20)):
        assert lr == opt_lr
        assert math.isclose(lr, 0.5 * 0.25 ** (epoch // 4), rel_tol=1e-14)
    opt, sched = _ours("adam", "CosineAnnealingLR", 0.2, T_max=6, eta_min=0.02)
    for epoch, (lr, _) in enumerate(_run(opt, sched, 30)):
        expected = 0.02 + (0.2 - 0.02) * (1 + math.cos(math.pi * epoch / 6)) / 2
        assert math.isclose(lr, expected, rel_tol=1e-12, abs_tol=1e-15)
    assert sched.last_epoch == 30 and sched.base_lrs == [0.2]


def test_schedules_chain_from_the_current_lr():
    """As PyTorch's: a step starts from optimizer.lr, so a manual change carries on."""
    opt, sched = _ours("sgd", "StepLR", 1.0, step_size=2, gamma=0.5)
    sched.step()
    opt.lr = 4.0
    sched.step()                    # epoch 2: 4.0 * 0.5
    assert opt.lr == 2.0 and sched.get_last_lr() == [2.0]


def test_get_last_lr_is_a_copy():
    opt, sched = _ours("sgd", "StepLR", 1.0, step_size=1)
    sched.get_last_lr().append(3.0)
    assert sched.get_last_lr() == [1.0]


def test_errors():
    opt, _ = _ours("sgd", "StepLR", 1.0, step_size=1)
    with pytest.raises(ValueError, match="step_size must be >= 1"):
        optim.StepLR(opt, 0)
    with pytest.raises(TypeError, match="step_size must be an integer"):
        optim.StepLR(opt, 2.5)
    with pytest.raises(ValueError, match="gamma"):
        optim.StepLR(opt, 1, gamma=-0.1)
    with pytest.raises(ValueError, match="T_max must be >= 1"):
        optim.CosineAnnealingLR(opt, 0)
    with pytest.raises(ValueError, match="eta_min"):
        optim.CosineAnnealingLR(opt, 5, eta_min=float("nan"))
    with pytest.raises(TypeError, match="not an optimizer"):
        optim.StepLR(object(), 1)
