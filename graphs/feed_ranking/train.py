"""Training entry point: fit RankerNet on the synthetic interactions, register `feed_ranking@champion`.

Run it with `graphops train feed_ranking`. Seeded and deterministic: re-running re-uses the
registered version. The feature tables it learns from are the committed Parquet sources
(`data.py` regenerates them byte-identically), the same ones the graph's lookups serve.
"""

from __future__ import annotations

import numpy as np
import torch

from graphops.registry import Registry, ResolvedModel
from graphs.feed_ranking.data import World, validation_rows, world
from graphs.feed_ranking.metrics import ndcg_at_10
from graphs.feed_ranking.network import RankerNet
from graphs.feed_ranking.preprocess import pair_features

MODEL_NAME = "feed_ranking"
ALIAS = "champion"
COLD_START = 0.05
"""Share of training rows whose member features are blanked (the defaults of a new member)."""


def features_for(
    w: World, members: np.ndarray, items: np.ndarray, known: np.ndarray | None = None
) -> np.ndarray:
    """Ranker inputs for ``members`` (rows,) x ``items`` (rows, candidates), as the graph builds them.

    Members outside the table (or not ``known``) get the lookup defaults: zeros.
    """
    known = (members < len(w.member_topics)) if known is None else known
    safe = np.where(known, members, 0)
    blank = ~known

    def member(values: np.ndarray) -> np.ndarray:
        out = values[safe].copy()
        out[blank] = 0.0
        return out

    return pair_features(
        member(w.member_topics),
        member(w.member_activity),
        member(w.member_tenure_days),
        w.item_topics[items],
        w.item_quality[items],
        w.item_popularity[items],
        w.age_days[items],
    )


def train(
    registry: Registry, *, epochs: int = 6, hidden: int = 32, lr: float = 0.01
) -> ResolvedModel:
    """Train, measure NDCG@10 against popularity on the held-out split and register."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is fastest and leaves the other core free
    try:
        net, ndcg, baseline, loss = _fit(epochs=epochs, hidden=hidden, lr=lr)
    finally:
        torch.set_num_threads(threads)
    return registry.register_torch(
        name=MODEL_NAME,
        module=net,
        config={"inputs": net.layers[0].in_features, "hidden": hidden},
        alias=ALIAS,
        params={"epochs": epochs, "hidden": hidden, "lr": lr, "seed": 0},
        metrics={"val_ndcg_at_10": ndcg, "popularity_ndcg_at_10": baseline, "final_loss": loss},
        description=f"RankerNet(hidden={hidden}), NDCG@10 {ndcg:.4f} vs popularity {baseline:.4f}",
    )


def _fit(*, epochs: int, hidden: int, lr: float) -> tuple[RankerNet, float, float, float]:
    torch.manual_seed(0)
    w = world()
    rng = np.random.default_rng(0)
    known = rng.random(len(w.train_members)) >= COLD_START
    x = features_for(w, w.train_members, w.train_items[:, None], known)[:, 0, :]
    inputs = torch.as_tensor(x)
    targets = torch.as_tensor(w.train_clicks, dtype=torch.float32)
    net = RankerNet(inputs=x.shape[1], hidden=hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for batch in torch.randperm(len(inputs), generator=generator).split(512):
            optimizer.zero_grad()
            loss = loss_fn(net(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
    net.eval()
    held_out = validation_rows(w)
    pairs = features_for(w, held_out["member_id"], held_out["candidate_ids"])
    with torch.inference_mode():
        scores = net(torch.as_tensor(pairs)).numpy()
    ndcg = ndcg_at_10(scores, held_out["relevance"])
    baseline = ndcg_at_10(held_out["popularity_scores"], held_out["relevance"])
    return net, ndcg, baseline, loss.item()
