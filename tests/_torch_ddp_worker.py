"""A small classifier trained with fastdl.torch losses, under DDP or alone.

``python tests/_torch_ddp_worker.py --rank R --world-size W --port P --out FILE``
joins a ``torch.distributed`` gloo group on 127.0.0.1:P, wraps the model in
``DistributedDataParallel`` and trains on this rank's share of every batch;
rank 0 writes the per-step global losses and the final parameters to FILE
(``.npz``).  :func:`train` with ``world_size=1`` is the single-process run the
DDP run must reproduce (test_fastdl_torch_training.py compares them).

The model: ``nn.Linear -> fastdl.torch.nn.Tanh -> fastdl.torch.nn.LinearCrossEntropyLoss``
(a head owning its parameters) plus ``0.1 * fastdl.torch.nn.MSELoss`` on the
hidden state, in float64 so the comparison can be tight.

Only the standard library is imported at module level (pytest imports this
file for doctests where torch may be absent).
"""

from __future__ import annotations

import argparse
import os
import sys

STEPS = 8
BATCH = 32  # global batch; each of W ranks takes BATCH / W rows
N, D, HIDDEN, CLASSES = 128, 10, 16, 5


def _data():
    import torch

    g = torch.Generator().manual_seed(123)
    X = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = (X[:, :CLASSES].argmax(1) + (X[:, -1] > 1).long()) % CLASSES
    return X, y


def _model():
    import torch

    import fastdl.torch.nn as fnn

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(D, HIDDEN, dtype=torch.float64)
            self.act = fnn.Tanh()
            self.head = fnn.LinearCrossEntropyLoss(HIDDEN, CLASSES, bias=True,
                                                   dtype=torch.float64, label_smoothing=0.05)
            self.reg = fnn.MSELoss()

        def forward(self, x, y):
            h = self.act(self.body(x))
            return self.head(h, y) + 0.1 * self.reg(h, torch.zeros_like(h))

    return Net()


def train(rank=0, world_size=1):
    """(global loss per step, final parameters by name) of the run."""
    import torch
    import torch.distributed as dist

    X, y = _data()
    model = _model()
    net = model
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    share = BATCH // world_size
    losses = []
    for step in range(STEPS):
        start = (step * BATCH) % N + rank * share
        xb, yb = X[start:start + share], y[start:start + share]
        opt.zero_grad()
        loss = net(xb, yb)
        loss.backward()  # DDP averages the gradients over the ranks
        opt.step()
        value = loss.detach().clone()
        if world_size > 1:
            dist.all_reduce(value)
            value /= world_size
        losses.append(value.item())
    params = {name: p.detach().numpy().copy() for name, p in model.named_parameters()}
    return losses, params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    from datetime import timedelta

    import numpy as np
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}",
                            rank=args.rank, world_size=args.world_size,
                            timeout=timedelta(seconds=60))
    try:
        losses, params = train(args.rank, args.world_size)
        # Both ranks done with every collective before either tears gloo down.
        dist.barrier()
    finally:
        dist.destroy_process_group()
    if args.rank == 0:
        np.savez(args.out, losses=np.array(losses), **params)
    print(f"rank {args.rank}: trained, saved, process group destroyed", flush=True)
    # Leave without interpreter finalization.  Gloo's C++ threads can still
    # be unwinding when Python tears its modules down, and a std::thread
    # destroyed while joinable aborts the process ("terminate called without
    # an active exception", SIGABRT).  Rank 1 did so now and then under the
    # full test suite, once even after the barrier above.  Everything this
    # process owes the test is written and flushed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
