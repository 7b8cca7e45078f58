"""Training entry point: a WordPiece tokenizer and a tiny BERT fitted here, `support_tickets@champion`.

Run it with `graphops train support_tickets`. Both are trained on the seeded synthetic tickets
(`data.py`), deterministically, and registered with MLflow's own transformers flavor (the MLflow
UI shows a normal transformers model): re-running reuses the registered version.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from graphops.models.transformers import SAVE_KWARGS, save_components, wordpiece_tokenizer
from graphops.registry import Registry, ResolvedModel
from graphs.support_tickets.data import QUEUES, train_split, validation_split

MODEL_NAME = "support_tickets"
ALIAS = "champion"
MAX_LENGTH = 48
"""Tokens per ticket the model reads (longer tickets are truncated)."""
VOCAB_SIZE = 1000
BATCH = 64


def train(
    registry: Registry, *, epochs: int = 3, hidden: int = 64, lr: float = 3e-3
) -> ResolvedModel:
    """Train tokenizer and classifier, measure validation accuracy, register; the pinned version."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains fastest on one thread; leave the other core free
    try:
        tokenizer, net, accuracy, loss = fit(epochs=epochs, hidden=hidden, lr=lr)
    finally:
        torch.set_num_threads(threads)
    return registry.register_flavor(
        name=MODEL_NAME,
        flavor="transformers",
        model=save_components(net, tokenizer),
        alias=ALIAS,
        params={"epochs": epochs, "hidden": hidden, "lr": lr, "vocab_size": VOCAB_SIZE, "seed": 0},
        metrics={"val_accuracy": accuracy, "final_loss": loss},
        description=f"Tiny BERT (hidden={hidden}, 2 layers), validation accuracy {accuracy:.4f}",
        **SAVE_KWARGS,
    )


def fit(*, epochs: int, hidden: int, lr: float) -> tuple[Any, Any, float, float]:
    """(tokenizer, model, validation accuracy, last loss); seeded."""
    from transformers import BertConfig, BertForSequenceClassification

    texts, queues = train_split()
    tokenizer = wordpiece_tokenizer(texts, vocab_size=VOCAB_SIZE, max_length=MAX_LENGTH)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=len(QUEUES),
        id2label=dict(enumerate(QUEUES)),
        label2id={q: i for i, q in enumerate(QUEUES)},
        pad_token_id=tokenizer.pad_token_id,
    )
    net = BertForSequenceClassification(config)
    encoded = tokenizer(
        texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    targets = torch.as_tensor([QUEUES.index(q) for q in queues])
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    net.train()
    loss = torch.zeros(())
    for _ in range(epochs):
        for batch in torch.randperm(len(targets), generator=generator).split(BATCH):
            width = int(mask[batch].sum(1).max())  # trim the padding this batch does not need
            optimizer.zero_grad()
            out = net(
                input_ids=ids[batch, :width],
                attention_mask=mask[batch, :width],
                labels=targets[batch],
            )
            out.loss.backward()
            optimizer.step()
            loss = out.loss.detach()
    net.eval()
    val_texts, val_queues = validation_split()
    with torch.inference_mode():
        val = tokenizer(
            val_texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        predicted = net(
            input_ids=val["input_ids"], attention_mask=val["attention_mask"]
        ).logits.argmax(1)
    accuracy = float(np.mean(np.array(QUEUES)[predicted.numpy()] == np.array(val_queues)))
    return tokenizer, net, accuracy, float(loss)
