"""Training entry point: fit DigitsNet on the training split and register it as `digits@champion`.

Run it with `graphops train digits` (or `nox -s train`); training is seeded and deterministic, so
re-running it re-uses the registered version instead of adding a new one.
"""

from __future__ import annotations

import numpy as np
import torch

from graphops.registry import Registry, ResolvedModel
from graphs.digits.data import split
from graphs.digits.network import DigitsNet

MODEL_NAME = "digits"
ALIAS = "champion"


def train(
    registry: Registry, *, epochs: int = 40, hidden: int = 128, lr: float = 0.01
) -> ResolvedModel:
    """Train, evaluate on the validation split and register; returns the pinned version."""
    threads = torch.get_num_threads()
    # A model this small trains fastest on one thread; more only contend with other processes.
    torch.set_num_threads(1)
    try:
        net, accuracy, loss = _fit(epochs=epochs, hidden=hidden, lr=lr)
    finally:
        torch.set_num_threads(threads)
    return registry.register_torch(
        name=MODEL_NAME,
        module=net,
        config={"hidden": hidden},
        alias=ALIAS,
        params={"epochs": epochs, "hidden": hidden, "lr": lr, "seed": 0},
        metrics={"val_accuracy": accuracy, "final_loss": loss},
        description=f"DigitsNet(hidden={hidden}), validation accuracy {accuracy:.4f}",
    )


def _fit(*, epochs: int, hidden: int, lr: float) -> tuple[DigitsNet, float, float]:
    torch.manual_seed(0)
    x_train, x_val, y_train, y_val = split()
    inputs = torch.as_tensor(x_train / 16.0, dtype=torch.float32)
    targets = torch.as_tensor(y_train, dtype=torch.long)
    net = DigitsNet(hidden=hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for batch in torch.randperm(len(inputs), generator=generator).split(128):
            optimizer.zero_grad()
            loss = loss_fn(net(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.inference_mode():
        predicted = net(torch.as_tensor(x_val / 16.0, dtype=torch.float32)).argmax(1).numpy()
    accuracy = float(np.mean(predicted == y_val))
    return net, accuracy, loss.item()
