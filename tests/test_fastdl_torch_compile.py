"""fastdl.torch under torch.compile (CPU, fullgraph=True): the graphs call the
fastdl custom ops, and values and gradients match eager mode.

Few and small on purpose: a compile costs seconds.  One test runs the default
inductor backend, the other ``aot_eager`` (the same Dynamo capture, fake
tensors and AOTAutograd traced backward, without C++ code generation).
"""

import pytest

torch = pytest.importorskip("torch")

import fastdl.torch as ft  # noqa: E402

F = torch.nn.functional


def _grads(fn, tensors, *rest):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    loss = fn(*leaves, *rest)
    return loss.detach(), torch.autograd.grad(loss, leaves)


def _fastdl_ops(graph_module):
    return {str(n.target) for n in graph_module.graph.nodes
            if n.op == "call_function" and str(n.target).startswith("fastdl.")}


def test_inductor_fullgraph_cross_entropy_relu():
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 7, generator=g)
    t = torch.randint(0, 7, (16,), generator=g)

    def step(x, t):
        return ft.cross_entropy(ft.relu(x), t, label_smoothing=0.1)

    compiled = torch.compile(step, fullgraph=True)
    loss, (dx,) = _grads(compiled, [x], t)
    ref, (ref_dx,) = _grads(lambda x, t: F.cross_entropy(F.relu(x), t, label_smoothing=0.1), [x], t)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(dx, ref_dx)
    with torch.no_grad():  # a second graph: the forward-only op
        torch.testing.assert_close(compiled(x, t), ref)


def test_aot_eager_fullgraph_more_ops():
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func

    torch._dynamo.reset()
    seen = []

    def record(gm, example_inputs):
        seen.append(_fastdl_ops(gm))
        return make_boxed_func(gm.forward)

    backend = aot_autograd(fw_compiler=record, bw_compiler=record)
    g = torch.Generator().manual_seed(1)
    d = dict(dtype=torch.float64)
    x, W1, b1 = torch.randn(12, 5, generator=g, **d), torch.randn(8, 5, generator=g, **d), \
        torch.randn(8, generator=g, **d)
    W2, y = torch.randn(6, 8, generator=g, **d), torch.randn(12, 8, generator=g, **d)
    t = torch.randint(0, 6, (12,), generator=g)

    def model(x, W1, b1, W2, t, y, ops, logsumexp, lce):
        h = ops.gelu(ops.linear(x, W1, b1), approximate="tanh")
        reg = ops.mse_loss(ops.softmax(h, 1), torch.softmax(y, 1)) + logsumexp(h, 1).mean()
        return lce(h, W2, t) + reg

    def ours(*args):
        return model(*args, ft, ft.logsumexp, ft.linear_cross_entropy)

    def theirs(*args):
        return model(*args, F, torch.logsumexp,
                     lambda h, W, t: F.cross_entropy(F.linear(h, W), t))

    compiled = torch.compile(ours, fullgraph=True, backend=backend)
    loss, grads = _grads(compiled, [x, W1, b1, W2], t, y)
    ref, ref_grads = _grads(theirs, [x, W1, b1, W2], t, y)
    torch.testing.assert_close(loss, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
    forward_ops, backward_ops = seen[0], seen[1]
    assert {"fastdl.linear.default", "fastdl.gelu.default", "fastdl.softmax.default",
            "fastdl.logsumexp.default", "fastdl.mse_loss_with_grad.default",
            "fastdl.linear_cross_entropy_with_grad.default"} <= forward_ops
    assert {"fastdl.linear_backward.default", "fastdl.gelu_backward.default",
            "fastdl.softmax_backward.default"} <= backward_ops
