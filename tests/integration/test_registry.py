"""The registry layer against a real MLflow store."""

from __future__ import annotations

import pytest
import torch

from graphops import RegistryError, model
from graphops.graph import GraphPackage, ModelURI
from graphops.registry import Registry, ResolvedModel


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
    assert trainer(registry).version == champion.version
    versions = registry.client.search_model_versions("name='digits'")
    assert [int(v.version) for v in versions] == [champion.version]


def test_missing_model_lists_what_exists(registry: Registry, champion: ResolvedModel) -> None:
    with pytest.raises(
        RegistryError, match=r'No registered model "digit".*Did you mean "digits"'
    ) as info:
        registry.resolve("models:/digit@champion")
    assert "Registered models: digits" in str(info.value)


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


def test_overwritten_artifacts_are_refused_at_load(tmp_path, digits: GraphPackage) -> None:
    own = Registry(tmp_path / ".graphops")
    node = digits.graph.node("logits")
    net_cls = node.architecture
    pinned = own.register_torch(
        name="digits", module=net_cls(), config={"hidden": 128}, alias="champion"
    )
    own.load(node, pinned)  # intact: loads
    weights = next((tmp_path / ".graphops" / "mlartifacts").rglob("weights.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(RegistryError, match="changed since they were pinned"):
        own.load(node, pinned)


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
