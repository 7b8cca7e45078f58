"""The baselines of the online benchmark, written by hand as an expert would, without graphops.

- `hand_app`: a Ray Serve application of two deployments: an ingress that validates the body
  with the graph's pydantic schema, scales the pixels, awaits the model deployment and applies
  the softmax; and a model deployment with ``@serve.batch`` (same batch size and wait, same
  resources, same ``max_ongoing_requests`` as graphops gives its deployments).
- `fastapi_app`: a plain FastAPI app under uvicorn doing the same work in-process (no Ray, no
  batching): the calibration row that shows what Serve itself costs.
"""

import os
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request

from benchmarks._baselines import load_net


def _softmax(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return probs.argmax(axis=1), probs.max(axis=1)


class HandModel:
    """DigitsNet behind Serve's dynamic batching."""

    def __init__(
        self, repo: str, source: str, tracking_uri: str, max_batch_size: int, wait_s: float
    ) -> None:
        import torch

        self.torch = torch
        self.net = load_net(repo, source, tracking_uri)
        self.__call__.set_max_batch_size(max_batch_size)
        self.__call__.set_batch_wait_timeout_s(wait_s)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Logits for a batch of requests' features."""
        sizes = [len(x) for x in inputs]
        with self.torch.inference_mode():
            out = self.net(self.torch.from_numpy(np.concatenate(inputs))).numpy()
        return np.split(out, np.cumsum(sizes)[:-1])


class HandIngress:
    """Validate, preprocess, call the model, postprocess."""

    def __init__(self, repo: str, model: Any) -> None:
        import sys

        if repo not in sys.path:
            sys.path.insert(0, repo)
        from graphs.digits import DigitsRequest

        self.schema = DigitsRequest
        self.model = model

    async def __call__(self, request: Request) -> dict[str, Any]:
        """One digits request -> label and confidence."""
        body = self.schema.model_validate_json(await request.body())
        features = np.asarray([body.pixels], dtype=np.float32) / 16.0
        logits = await self.model.remote(features)
        label, confidence = _softmax(logits)
        return {"label": int(label[0]), "confidence": float(confidence[0])}


def hand_app(
    repo: str,
    source: str,
    tracking_uri: str,
    ingress: dict[str, Any],
    model: dict[str, Any],
    max_batch_size: int,
    wait_s: float,
) -> serve.Application:
    """The hand-written application; ``ingress``/``model`` are Deployment.options kwargs."""
    model_app = (
        serve.deployment(HandModel)
        .options(**model)
        .bind(repo, source, tracking_uri, max_batch_size, wait_s)
    )
    return serve.deployment(HandIngress).options(**ingress).bind(repo, model_app)


def fastapi_app() -> Any:
    """``uvicorn --factory benchmarks.serve_apps:fastapi_app`` (settings from BENCH_* env vars)."""
    import sys

    import torch
    from fastapi import FastAPI

    repo = os.environ["BENCH_REPO"]
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from graphs.digits import DigitsRequest, DigitsResponse

    torch.set_num_threads(1)  # what a one-CPU Serve replica gets
    net = load_net(repo, os.environ["BENCH_SOURCE"], os.environ["BENCH_TRACKING_URI"])
    app = FastAPI()

    @app.post("/digits")
    def digits(body: DigitsRequest) -> DigitsResponse:
        features = np.asarray([body.pixels], dtype=np.float32) / 16.0
        with torch.inference_mode():
            logits = net(torch.from_numpy(features)).numpy()
        label, confidence = _softmax(logits)
        return DigitsResponse(label=int(label[0]), confidence=float(confidence[0]))

    return app
