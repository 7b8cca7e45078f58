"""Deterministic synthetic members, items and engagement with a hidden preference structure.

Every member has a hidden taste over ``TOPICS`` topics and every item a hidden topic mix and
quality; engagement is likelier when taste and topics align, for good and fresh items. The
features the graph sees are noisy views of those hidden values, and item popularity is the
engagement each item got in the training interactions, so a personalized model can beat a
popularity ranking only by learning the member x item crosses.

``python -m graphs.feed_ranking.data`` rewrites the committed Parquet files (byte-identical:
seeded generation, fixed writer options).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent
MEMBERS_FILE = HERE / "features" / "members.parquet"
ITEMS_FILE = HERE / "features" / "items.parquet"
VALIDATION_FILE = HERE / "validation.parquet"
SEED = 7
TOPICS = 8
MEMBERS = 2000
ITEMS = 1000
CANDIDATES = 20
TRAIN_CANDIDATES = 30
VALIDATION_MEMBERS = 400
NEW_MEMBERS = 20
"""Validation requests for members the feature table does not know (cold start: defaults)."""


@dataclass(frozen=True)
class World:
    """The hidden truth and the observable feature tables."""

    taste: np.ndarray  # (MEMBERS, TOPICS) hidden
    mix: np.ndarray  # (ITEMS, TOPICS) hidden
    quality: np.ndarray  # (ITEMS,) hidden
    age_days: np.ndarray  # (ITEMS,) observed
    member_topics: np.ndarray  # (MEMBERS, TOPICS) observed, noisy taste
    member_activity: np.ndarray  # (MEMBERS,)
    member_tenure_days: np.ndarray  # (MEMBERS,)
    item_topics: np.ndarray  # (ITEMS, TOPICS) observed, noisy mix
    item_quality: np.ndarray  # (ITEMS,) observed, noisy quality
    item_popularity: np.ndarray  # (ITEMS,) log1p(engagements in training)
    train_members: np.ndarray  # (rows,)
    train_items: np.ndarray  # (rows,)
    train_clicks: np.ndarray  # (rows,) 0/1


def affinity(world: World, members: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The hidden engagement logit of members x items (same shapes)."""
    match = np.einsum("...t,...t->...", world.taste[members], world.mix[items])
    return 8.0 * match + 0.8 * world.quality[items] - world.age_days[items] / 40.0 - 2.5


def world() -> World:
    """Generate everything from ``SEED``."""
    rng = np.random.default_rng(SEED)
    taste = rng.dirichlet(np.full(TOPICS, 0.3), MEMBERS)
    mix = rng.dirichlet(np.full(TOPICS, 0.3), ITEMS)
    quality = rng.normal(0.0, 1.0, ITEMS)
    age_days = rng.exponential(15.0, ITEMS)
    members = np.repeat(np.arange(MEMBERS), TRAIN_CANDIDATES)
    # Better items are shown more often: popularity is informative but not personal.
    shown = np.exp(0.8 * quality)
    items = rng.choice(ITEMS, size=len(members), p=shown / shown.sum())
    partial = World(taste, mix, quality, age_days, *([np.empty(0)] * 9))
    clicks = (rng.random(len(members)) < _sigmoid(affinity(partial, members, items))).astype(
        np.int64
    )
    popularity = np.log1p(np.bincount(items, weights=clicks, minlength=ITEMS))
    return World(
        taste=taste,
        mix=mix,
        quality=quality,
        age_days=age_days.astype(np.float32),
        member_topics=np.clip(taste + rng.normal(0, 0.05, taste.shape), 0, None).astype(np.float32),
        member_activity=rng.gamma(2.0, 3.0, MEMBERS).astype(np.float32),
        member_tenure_days=rng.integers(1, 3000, MEMBERS).astype(np.float32),
        item_topics=np.clip(mix + rng.normal(0, 0.05, mix.shape), 0, None).astype(np.float32),
        item_quality=(quality + rng.normal(0, 0.3, ITEMS)).astype(np.float32),
        item_popularity=popularity.astype(np.float32),
        train_members=members,
        train_items=items,
        train_clicks=clicks,
    )


def validation_rows(w: World) -> dict[str, np.ndarray]:
    """Held-out requests: members x 20 fresh candidates, graded relevance and popularity."""
    rng = np.random.default_rng(SEED + 1)
    members = rng.choice(MEMBERS, VALIDATION_MEMBERS - NEW_MEMBERS, replace=False)
    candidates = np.stack([rng.choice(ITEMS, CANDIDATES, replace=False) for _ in members])
    logit = affinity(w, members[:, None], candidates)
    # Graded relevance 0..3: how many of three simulated impressions were engaged with.
    relevance = (rng.random((*logit.shape, 3)) < _sigmoid(logit)[..., None]).sum(-1)
    new_ids = np.arange(MEMBERS, MEMBERS + NEW_MEMBERS)  # unknown to the member table
    new_candidates = np.stack([rng.choice(ITEMS, CANDIDATES, replace=False) for _ in new_ids])
    new_relevance = (
        rng.random((NEW_MEMBERS, CANDIDATES, 3))
        < _sigmoid(1.2 * w.quality[new_candidates] - 1.0)[..., None]
    ).sum(-1)
    all_candidates = np.concatenate([candidates, new_candidates])
    return {
        "member_id": np.concatenate([members, new_ids]).astype(np.int64),
        "candidate_ids": all_candidates.astype(np.int64),
        "relevance": np.concatenate([relevance, new_relevance]).astype(np.int64),
        "popularity_scores": w.item_popularity[all_candidates].astype(np.float64),
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def write_files() -> list[Path]:
    """Write the two feature tables and the validation split as Parquet (deterministically)."""
    w = world()
    MEMBERS_FILE.parent.mkdir(parents=True, exist_ok=True)
    tables = {
        MEMBERS_FILE: {
            "member_id": pa.array(np.arange(MEMBERS, dtype=np.int64)),
            "topics": _vectors(w.member_topics),
            "activity": pa.array(w.member_activity),
            "tenure_days": pa.array(w.member_tenure_days),
        },
        ITEMS_FILE: {
            "item_id": pa.array(np.arange(ITEMS, dtype=np.int64)),
            "topics": _vectors(w.item_topics),
            "quality": pa.array(w.item_quality),
            "popularity": pa.array(w.item_popularity),
            "age_days": pa.array(w.age_days),
        },
        VALIDATION_FILE: {
            k: _vectors(v) if v.ndim == 2 else pa.array(v) for k, v in validation_rows(w).items()
        },
    }
    for path, columns in tables.items():
        pq.write_table(pa.table(columns), path, compression="zstd")
    return list(tables)


def _vectors(values: np.ndarray) -> pa.Array:
    return pa.array(list(values))


if __name__ == "__main__":
    for written in write_files():
        print(written, written.stat().st_size, "bytes")
