"""The baselines of the online benchmarks, written by hand as an expert would, without graphops.

- `Work`: one request of a graph done plainly in-process: parse and validate the JSON body with
  the graph's own pydantic request schema, the graph's preprocessing, the same registered model
  weights (torch, one thread), the same postprocessing, a JSON answer. For feed_ranking the
  member's and the candidates' features come from Redis in ONE ``MGET`` (the same keys and
  packed records graphops' Redis store reads; missing entities get the declared defaults).
- `floor_app`: the floor, a Starlette app under uvicorn (uvloop, httptools, no access log) in
  ONE process serving ``POST /<graph>`` with `Work` for every graph.
- `one_app`: a minimal Serve application, ONE deployment doing the same `Work` per request
  (`ONE_DEPLOYMENT` settings: ``max_ongoing_requests`` above the benchmark's concurrency,
  a fractional CPU); reached through Serve's proxy, HAProxy or its replica's own port.
- `hand_app`: the former baseline of P1, two deployments: an ingress that validates the body
  with the graph's pydantic schema, scales the pixels, awaits the model deployment and applies
  the softmax; and a model deployment with ``@serve.batch`` (same batch size and wait, same
  resources, same ``max_ongoing_requests`` as graphops gives its deployments). Kept as an extra,
  labelled row: an expert writes one deployment for this work.
- `fastapi_app`: a plain FastAPI app under uvicorn doing the digits work in-process (no Ray, no
  batching): the calibration row that shows what Serve itself costs.
"""

import json
import os
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from benchmarks._baselines import load_net

ONE_DEPLOYMENT: dict[str, Any] = {
    "num_replicas": 1,
    "max_ongoing_requests": 256,
    "ray_actor_options": {"num_cpus": 0.25},
}
"""Serve options of `one_app`'s deployment (expert settings; named in the results)."""
ARCHITECTURES = {
    "digits": "graphs.digits.network:DigitsNet",
    "feed_ranking": "graphs.feed_ranking.network:RankerNet",
}


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


class Work:
    """One request of ``spec["graph"]``, done plainly: body bytes in, JSON bytes out.

    ``spec``: graph, repo (the graphs' checkout), source and tracking_uri (the registered model
    version), and for feed_ranking redis_url and key_prefix (where the feature tables are loaded).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        import sys

        import torch

        repo = spec["repo"]
        if repo not in sys.path:
            sys.path.insert(0, repo)
        torch.set_num_threads(1)  # one process, one request at a time: no intra-op threads
        self.torch = torch
        self.graph = spec["graph"]
        self.net = load_net(repo, spec["source"], spec["tracking_uri"], ARCHITECTURES[self.graph])
        if self.graph == "digits":
            from graphs.digits import DigitsRequest

            self.schema: Any = DigitsRequest
        else:
            import redis

            from graphs.feed_ranking import ITEMS, MEMBERS, TOP_K, RankingRequest
            from graphs.feed_ranking.preprocess import pair_features

            self.schema = RankingRequest
            self.pair_features, self.top_k = pair_features, TOP_K
            self.redis = redis.Redis.from_url(spec["redis_url"])
            prefix = spec["key_prefix"]
            self.member_key, self.item_key = f"{prefix}:{MEMBERS.name}:", f"{prefix}:{ITEMS.name}:"
            self.tables = {}
            for table in (MEMBERS, ITEMS):
                dtype = table.record_dtype()
                default = np.zeros(1, dtype)
                for name, feature in table.features.items():
                    default[name] = feature.default
                self.tables[table.name] = (dtype, default.tobytes())

    def __call__(self, body: bytes) -> bytes:
        """The JSON answer to one JSON request body (pydantic raises on an invalid one)."""
        request = self.schema.model_validate_json(body)
        if self.graph == "digits":
            features = np.asarray([request.pixels], dtype=np.float32) / 16.0
            with self.torch.inference_mode():
                logits = self.net(self.torch.from_numpy(features)).numpy()
            label, confidence = _softmax(logits)
            return json.dumps({"label": int(label[0]), "confidence": float(confidence[0])}).encode()
        ids = request.candidate_ids
        values = self.redis.mget(
            [self.member_key + str(request.member_id), *(self.item_key + str(i) for i in ids)]
        )
        member = self._records("members", values[:1])
        items = self._records("items", values[1:])
        pairs = self.pair_features(
            member["topics"],
            member["activity"],
            member["tenure_days"],
            items["topics"][None],
            items["quality"][None],
            items["popularity"][None],
            items["age_days"][None],
        )
        with self.torch.inference_mode():
            scores = self.net(self.torch.from_numpy(pairs)).numpy()[0]
        order = np.argsort(-scores, kind="stable")[: min(self.top_k, len(ids))]
        return json.dumps(
            {
                "scores": scores.tolist(),
                "top_items": np.asarray(ids)[order].tolist(),
                "top_scores": scores[order].tolist(),
            }
        ).encode()

    def _records(self, table: str, values: list[bytes | None]) -> np.ndarray:
        dtype, default = self.tables[table]
        return np.frombuffer(b"".join(default if v is None else v for v in values), dtype=dtype)


def floor_app() -> Any:
    """``uvicorn --factory benchmarks.serve_apps:floor_app``: the floor, one process.

    ``POST /<graph>`` for each spec in the JSON list at ``$BENCH_SPECS`` (a file).
    """
    from pathlib import Path

    from starlette.applications import Starlette
    from starlette.routing import Route

    specs = json.loads(Path(os.environ["BENCH_SPECS"]).read_text())

    def endpoint(work: Work) -> Any:
        async def answer(request: Request) -> Response:
            return Response(work(await request.body()), media_type="application/json")

        return answer

    routes = [Route(f"/{s['graph']}", endpoint(Work(s)), methods=["POST"]) for s in specs]
    return Starlette(routes=routes)


class OneDeployment:
    """The whole request in one Serve replica: `Work` on the body, the JSON answer."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.work = Work(spec)

    async def __call__(self, request: Request) -> Response:
        """Answer one POST."""
        return Response(self.work(await request.body()), media_type="application/json")


def one_app(spec: dict[str, Any], options: dict[str, Any] | None = None) -> serve.Application:
    """The minimal hand-written Serve application of ``spec``'s graph: one deployment."""
    return serve.deployment(OneDeployment).options(**(options or ONE_DEPLOYMENT)).bind(spec)
