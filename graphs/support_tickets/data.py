"""Seeded synthetic support tickets (no download): short texts from templates, each with its queue.

Each ticket is written from its queue's vocabulary; some carry a phrase of another queue (a
distractor) and a few are routed to another queue than their text suggests (label noise), so
a good model is accurate but not perfect. The same seed gives the same tickets on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VALIDATION_FILE = Path(__file__).with_name("validation.parquet")
QUEUES = ("billing", "technical", "account", "shipping")
"""The queues a ticket is routed to, in the order of the model's logits."""
SEED = 0
TRAIN_SIZE = 3000
VALIDATION_SIZE = 400
DISTRACTOR = 0.2
"""Share of tickets that also mention another queue's topic."""
LABEL_NOISE = 0.03
"""Share of tickets whose queue is another one than their text suggests."""

_TOPICS: dict[str, tuple[str, ...]] = {
    "billing": (
        "i was charged twice for my subscription",
        "the invoice shows the wrong amount",
        "please refund my last payment",
        "my credit card was declined at checkout",
        "why did my monthly fee go up",
        "i need a copy of my receipt",
        "cancel the automatic renewal charge",
        "the discount code was not applied to my bill",
        "there is an unknown charge on my statement",
        "i want to change my payment method",
    ),
    "technical": (
        "the app crashes when i open it",
        "the page keeps loading forever",
        "i get an error code when i upload a file",
        "the sync between my devices stopped working",
        "notifications do not show up on my phone",
        "the website is very slow today",
        "the export button does nothing",
        "video playback freezes after a few seconds",
        "the update failed to install",
        "the search returns no results at all",
    ),
    "account": (
        "i forgot my password and cannot log in",
        "please delete my account and my data",
        "i want to change the email on my profile",
        "my account was locked after too many attempts",
        "the two factor code never arrives",
        "how do i add a second user to my team",
        "someone else may have accessed my account",
        "i cannot verify my phone number",
        "please merge my two accounts",
        "i want to change my username",
    ),
    "shipping": (
        "my parcel has not arrived yet",
        "the tracking number does not work",
        "the package arrived damaged",
        "i received the wrong item in the box",
        "can i change the delivery address of my order",
        "the courier left the package at the wrong door",
        "when will my order be shipped",
        "the delivery is two weeks late",
        "part of my order is missing",
        "i want to return the item i received",
    ),
}
_OPENERS = ("", "hi,", "hello,", "hey team,", "good morning,", "dear support,", "urgent:", "help!")
_CLOSERS = ("", "thanks", "thank you", "please help", "any update?", "regards", "asap please")
_FILLERS = ("", "since yesterday", "again", "this week", "for the third time", "today")


def tickets(size: int, seed: int) -> tuple[list[str], list[str]]:
    """``size`` (texts, queues), seeded; texts are lowercase-ish with varied casing and spacing."""
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    queues: list[str] = []
    for _ in range(size):
        queue = QUEUES[int(rng.integers(len(QUEUES)))]
        parts = [
            _pick(rng, _OPENERS),
            _pick(rng, _TOPICS[queue]),
            _pick(rng, _FILLERS),
        ]
        if rng.random() < DISTRACTOR:
            other = QUEUES[int(rng.integers(len(QUEUES)))]
            parts.append("and also " + _pick(rng, _TOPICS[other]))
        parts.append(_pick(rng, _CLOSERS))
        text = " ".join(p for p in parts if p)
        if rng.random() < 0.3:
            text = text.capitalize()
        if rng.random() < 0.1:
            text = "  " + text.replace(" ", "  ", 1) + " "
        if rng.random() < LABEL_NOISE:
            queue = QUEUES[(QUEUES.index(queue) + 1 + int(rng.integers(3))) % len(QUEUES)]
        texts.append(text)
        queues.append(queue)
    return texts, queues


def train_split() -> tuple[list[str], list[str]]:
    """The training tickets (texts, queues)."""
    return tickets(TRAIN_SIZE, SEED)


def validation_split() -> tuple[list[str], list[str]]:
    """The validation tickets (texts, queues): another seed than training."""
    return tickets(VALIDATION_SIZE, SEED + 1)


def write_validation(path: Path = VALIDATION_FILE) -> Path:
    """Write the validation tickets as Parquet (columns ``text``, ``true_queue``: the truth)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts, queues = validation_split()
    pq.write_table(pa.table({"text": texts, "true_queue": queues}), path)
    return path


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


if __name__ == "__main__":
    print(write_validation())
