"""The registry layer against a real MLflow store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from graphops import RegistryError, model
from graphops.controller.gates import verify_lock
from graphops.environments import GraphLock
from graphops.graph import GraphPackage, ModelNode, ModelURI, content_hash
from graphops.registry import Registry, ResolvedModel, load_pinned, where_of
from graphops.registry._integrity import DIGEST_TAG
from tests.fixtures.locks import lock


def test_alias_resolves_to_exact_version_and_stable_digest(
    registry: Registry, champion: ResolvedModel
) -> None:
    again = registry.resolve("models:/digits@champion")
    assert (again.name, again.version, again.alias) == ("digits", champion.version, "champion")
    assert again.digest == champion.digest and again.digest.startswith("sha256:")
    by_version = registry.resolve(f"models:/digits/{champion.version}")
    assert by_version.digest == champion.digest and by_version.alias is None
    assert by_version.uri == f"models:/digits/{champion.version}"


def test_retraining_identical_model_reuses_the_version(
    registry: Registry, digits: GraphPackage, champion: ResolvedModel
) -> None:
    trainer = digits.trainer()
    assert trainer is not None
    before = registry.client.search_model_versions("name='digits'")
    assert trainer(registry).version == champion.version
    # No new version (other tests of the session may have added theirs, e.g. an ONNX export).
    after = registry.client.search_model_versions("name='digits'")
    assert sorted(int(v.version) for v in after) == sorted(int(v.version) for v in before)


def test_missing_model_lists_what_exists(registry: Registry, champion: ResolvedModel) -> None:
    with pytest.raises(
        RegistryError, match=r'No registered model "digit".*Did you mean "digits"'
    ) as info:
        registry.resolve("models:/digit@champion")
    # Every registered model is listed (other tests of the session register theirs too).
    assert re.search(r"Registered models: ([\w-]+, )*digits\b", str(info.value))


def test_missing_alias_lists_aliases(registry: Registry, champion: ResolvedModel) -> None:
    with pytest.raises(RegistryError, match='no alias "champ"') as info:
        registry.resolve(ModelURI("digits", alias="champ"))
    assert f"champion -> v{champion.version}" in str(info.value)


def test_missing_version_lists_versions(registry: Registry, champion: ResolvedModel) -> None:
    with pytest.raises(RegistryError, match="has no version 99") as info:
        registry.resolve("models:/digits/99")
    assert f"Versions: {champion.version}" in str(info.value)


def test_new_weights_make_a_new_version_and_move_the_alias(tmp_path, digits: GraphPackage) -> None:
    own = Registry(tmp_path / ".graphops")
    net_cls = digits.graph.node("logits").architecture
    first = own.register_torch(
        name="tiny", module=net_cls(hidden=4), config={"hidden": 4}, alias="champion"
    )
    torch.manual_seed(1)
    second = own.register_torch(
        name="tiny", module=net_cls(hidden=4), config={"hidden": 4}, alias="champion"
    )
    assert (first.version, second.version) == (1, 2)
    assert first.digest != second.digest
    assert own.resolve("models:/tiny@champion").version == 2


def register_tiny(registry: Registry, node: ModelNode, seed: int | None = None) -> ResolvedModel:
    """A small digits network (hidden=4) registered as digits@champion; seeded when asked."""
    assert node.architecture is not None
    if seed is not None:
        torch.manual_seed(seed)
    return registry.register_torch(
        name="digits", module=node.architecture(hidden=4), config={"hidden": 4}, alias="champion"
    )


def own_logits(tmp_path: Path, digits: GraphPackage) -> tuple[Registry, ModelNode]:
    """A registry of its own in ``tmp_path``, and digits' model node."""
    node = digits.graph.node("logits")
    assert isinstance(node, ModelNode)
    return Registry(tmp_path / ".graphops"), node


@pytest.fixture
def tampered(tmp_path: Path, digits: GraphPackage) -> Tampered:
    """digits@champion registered in a registry of its own, then one bit of its weights flipped."""
    own, node = own_logits(tmp_path, digits)
    assert node.architecture is not None
    pinned = register_tiny(own, node, seed=0)
    locked = lock().model_copy(update={"models": {"logits": pinned}})
    own.load(node, pinned)  # intact: loads
    assert verify_lock(own, locked, require_validation=False)[0].passed
    weights = next((tmp_path / ".graphops" / "mlartifacts").rglob("weights.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of the last weight
    weights.write_bytes(bytes(data))
    actual = content_hash(weights.parent)
    assert actual != pinned.digest
    return Tampered(own, node, pinned, locked, actual)


class Tampered(NamedTuple):
    registry: Registry
    node: ModelNode
    pinned: ResolvedModel
    locked: GraphLock
    actual: str


def refusal(tampered: Tampered) -> str:
    """What every use of the tampered version must say: model, version and both digests."""
    return (
        f"The artifacts of {tampered.pinned.uri} were changed in the store after registration: "
        f"they hash to {tampered.actual}, but {tampered.pinned.digest} was registered."
    )


def test_resolve_refuses_artifacts_changed_after_registration(tampered: Tampered) -> None:
    for uri in ("models:/digits@champion", tampered.pinned.uri):
        with pytest.raises(RegistryError) as info:
            tampered.registry.resolve(uri)
        assert info.value.what == refusal(tampered)
        assert "graphops train" in info.value.fix
    with pytest.raises(RegistryError) as info:
        tampered.registry.resolve(tampered.node.uri, where=where_of(tampered.node))
    assert (info.value.node, info.value.file, info.value.line) == (
        "logits",
        tampered.node.file,
        tampered.node.line,
    )
    assert str(info.value).startswith(f"node 'logits' ({tampered.node.file}:{tampered.node.line}):")


def test_a_lock_pinned_before_the_tamper_fails_the_digest_gate(tampered: Tampered) -> None:
    [gate] = verify_lock(tampered.registry, tampered.locked, require_validation=False)
    assert gate.name == "model digests" and not gate.passed
    assert gate.detail.startswith(f"logits: {refusal(tampered)} Do not use this version.")


def test_a_replica_load_refuses_the_tampered_weights(tampered: Tampered) -> None:
    for pin in (tampered.pinned, None):  # a worker with the lock's pin, or resolving itself
        with pytest.raises(RegistryError) as info:
            tampered.registry.load(tampered.node, pin)
        assert info.value.what == refusal(tampered)
        assert (info.value.node, info.value.file) == ("logits", tampered.node.file)


def test_a_worker_load_without_tracking_client_refuses_the_tampered_weights(
    tampered: Tampered,
) -> None:
    # What offline workers do: the pin's artifact URI, no MLflow client, digest against the pin.
    with pytest.raises(RegistryError) as info:
        load_pinned(tampered.node, tampered.pinned, tampered.registry.tracking_uri)
    # A worker has no registry: the pin is its reference, and the message names the pin.
    assert info.value.what == (
        f"The artifacts of {tampered.pinned.uri} changed since they were pinned "
        f"(digest {tampered.actual[:19]}, expected {tampered.pinned.digest[:19]})."
    )
    assert (info.value.node, info.value.file) == ("logits", tampered.node.file)


def test_pins_are_checked_against_the_registered_digest(
    tmp_path: Path, digits: GraphPackage
) -> None:
    own, node = own_logits(tmp_path, digits)
    pinned = register_tiny(own, node, seed=0)
    own.check_pins(digits.graph, {"logits": pinned})
    load_pinned(node, pinned, own.tracking_uri)  # intact: loads
    edited = pinned.model_copy(update={"digest": "sha256:" + "0" * 64})  # a lock edited by hand
    with pytest.raises(RegistryError) as info:
        own.check_pins(digits.graph, {"logits": edited})
    assert info.value.what == (
        f"{pinned.uri} is pinned at digest {edited.digest}, but {pinned.digest} is registered "
        "for it."
    )
    with pytest.raises(RegistryError, match="No pinned model version for model node logits"):
        own.check_pins(digits.graph, {})


def test_re_registering_makes_a_clean_version(tampered: Tampered) -> None:
    # The very same weights: the tampered version is not reused.
    again = register_tiny(tampered.registry, tampered.node, seed=0)
    assert again.version == tampered.pinned.version + 1
    assert again.digest == tampered.pinned.digest
    tampered.registry.load(tampered.node, again)


def test_a_version_registered_without_a_digest_is_refused(
    tmp_path: Path, digits: GraphPackage
) -> None:
    own, node = own_logits(tmp_path, digits)
    pinned = register_tiny(own, node)
    own.client.delete_model_version_tag("digits", str(pinned.version), DIGEST_TAG)
    with pytest.raises(RegistryError, match="records no digest") as info:
        own.resolve("models:/digits@champion")
    assert pinned.digest in info.value.what and "graphops train" in info.value.fix


def test_moving_the_alias_after_validation_keeps_the_pinned_digest(
    tmp_path: Path, digits: GraphPackage
) -> None:
    own, node = own_logits(tmp_path, digits)
    pinned = register_tiny(own, node, seed=0)
    locked = lock().model_copy(update={"models": {"logits": pinned}})
    moved = register_tiny(own, node, seed=1)
    assert moved.version != pinned.version and moved.digest != pinned.digest
    assert own.resolve(pinned.uri).digest == pinned.digest
    assert verify_lock(own, locked, require_validation=False)[0].passed
    own.load(node, pinned)
    edited = pinned.model_copy(update={"digest": moved.digest})  # a lock edited by hand
    with pytest.raises(RegistryError, match="changed since they were pinned"):
        own.load(node, edited)


def test_architecture_mismatch_is_named(registry: Registry, champion: ResolvedModel) -> None:
    class OtherNet(torch.nn.Module):
        def __init__(self, hidden: int) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(64, hidden)

    @model("models:/digits@champion", architecture=OtherNet)
    def logits(features: object, model: object) -> object:
        return model

    with pytest.raises(
        RegistryError, match=r'saved from architecture "DigitsNet".*declares "OtherNet"'
    ):
        registry.load(logits)
