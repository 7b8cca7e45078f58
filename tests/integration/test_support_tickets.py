"""The support_tickets graph: trained by its own entry point, validated on Ray Data, served.

Tokenizer and tiny BERT are trained here and registered with MLflow's transformers flavor; the
graph passes its gate offline, the served graph answers like the offline run (parity), and a
ticket posted over HTTP gets its queue back. Re-running train reuses the registered version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from graphops.graph import GraphPackage, load_graph
from graphops.registry import Registry, ResolvedModel
from graphops.runtime.online import OnlineApp, deploy, undeploy
from graphops.validation import validate_graph

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(scope="module")
def tickets(repo_copy: Path) -> GraphPackage:
    return load_graph(repo_copy, "support_tickets")


@pytest.fixture(scope="module")
def trained(tickets: GraphPackage, registry: Registry) -> ResolvedModel:
    trainer = tickets.trainer()
    assert trainer is not None
    return trainer(registry)


def test_train_registers_a_normal_transformers_model_and_reuses_it(
    tickets: GraphPackage, registry: Registry, trained: ResolvedModel
) -> None:
    trainer = tickets.trainer()
    assert trainer is not None
    again = trainer(registry)
    assert again.uri == trained.uri and again.digest == trained.digest
    version = registry.client.get_model_version("support_tickets", str(trained.version))
    run = registry.client.get_run(version.run_id)
    assert run.data.metrics["val_accuracy"] >= 0.9


def test_passes_its_gate_on_ray_data_and_serves_what_it_computed(
    repo_copy: Path, registry: Registry, trained: ResolvedModel
) -> None:
    result = validate_graph(repo_copy, "support_tickets", registry, commit="test", parity=True)

    assert result.status == "passed", result.problems
    assert result.models == {"logits": trained.uri}
    [gate] = result.gates
    assert (gate.metric, gate.column, gate.passed) == ("accuracy", "queue", True)
    assert result.rows == 400
    assert result.parity is not None and result.parity.passed and result.parity.mismatches == 0


@pytest.fixture(scope="module")
def served(
    tickets: GraphPackage, registry: Registry, serve_port: int, trained: ResolvedModel
) -> Iterator[OnlineApp]:
    online = deploy(tickets, registry, port=serve_port)
    try:
        yield online
    finally:
        undeploy(online.name)


def test_answers_a_ticket_over_http(served: OnlineApp) -> None:
    body = {"text": "Hello,  my parcel has NOT arrived yet, any update?"}
    answer = requests.post(served.url, data=json.dumps(body), timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["queue"] == "shipping" and 0.5 < answer.json()["confidence"] <= 1
    many = requests.post(
        served.url,
        data=json.dumps([{"text": "i was charged twice"}, {"text": "the app crashes"}]),
        timeout=60,
    )
    assert [r["queue"] for r in many.json()] == ["billing", "technical"]
    too_long = requests.post(served.url, data=json.dumps({"text": "x" * 1001}), timeout=60)
    assert too_long.status_code == 422
