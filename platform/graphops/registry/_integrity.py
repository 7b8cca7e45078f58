"""Model integrity: the digest recorded at registration is the reference for every use.

`Registry.resolve`, every load (validation's workers, Serve replicas) and re-registration hash
the artifact files they downloaded and compare them here, so a changed file is refused the same
way everywhere, with the model, version, node and both digests.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphops.errors import RegistryError, Where
from graphops.graph import ModelNode

DIGEST_TAG = "graphops.digest"
"""Model version tag holding the artifact digest computed at registration: the reference."""
REREGISTER = (
    "that registers the weights as a new version (a version whose files changed is never "
    "reused); then validate and promote it."
)


@dataclass(frozen=True)
class Version:
    """A registered model version as the registry records it."""

    name: str
    version: int
    source: str
    registered: str | None  # the digest tag; None for versions registered before digests

    @property
    def uri(self) -> str:
        """``models:/name/version``."""
        return f"models:/{self.name}/{self.version}"


def where_of(node: ModelNode) -> Where:
    """The location keywords of a model node's errors: node name, file and line."""
    return {"node": node.name, "file": node.file, "line": node.line}


def verified(found: Version, digest: str, where: Where) -> str:
    """``digest`` when it is the one registered; a `RegistryError` naming both otherwise."""
    if found.registered is None:
        raise RegistryError(
            f"{found.uri} records no digest (model version tag {DIGEST_TAG}): it was "
            "registered before graphops recorded digests, so its artifacts cannot be verified "
            f"(they hash to {digest} now).",
            fix=f"Re-register the model (e.g. `graphops train <graph>`): {REREGISTER}",
            **where,
        )
    if digest != found.registered:
        raise RegistryError(
            f"The artifacts of {found.uri} were changed in the store after registration: "
            f"they hash to {digest}, but {found.registered} was registered.",
            fix=f"Do not use this version. Re-register the model (e.g. `graphops train "
            f"<graph>`): {REREGISTER}",
            **where,
        )
    return digest
