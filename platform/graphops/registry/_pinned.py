"""Pinned models: a version pinned by digest, and loading it without a registry client.

A worker (a Ray Data actor, a Serve replica) loads its model with `load_pinned`: it downloads
the pin's artifact URI, hashes the very copy it builds from and refuses it unless it equals the
pin. `Registry` (`graphops.registry._mlflow`) pins versions and loads through the same checks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import unquote, urlsplit

from pydantic import Field

from graphops._models import FrozenModel
from graphops.errors import RegistryError, Where
from graphops.graph import ModelNode, content_hash
from graphops.registry._integrity import Version, where_of

if TYPE_CHECKING:
    from graphops.models import Model


class ResolvedModel(FrozenModel):
    """A model reference pinned to an exact registry version and the digest of its artifacts."""

    name: Annotated[str, Field(description="Registered model name.")]
    version: Annotated[int, Field(description="Exact registry version.")]
    alias: Annotated[str | None, Field(description="Alias it was resolved from, if any.")] = None
    digest: Annotated[str, Field(description="sha256 over the artifact files (name + content).")]
    source: Annotated[str, Field(description="Artifact URI of the version.")]

    @property
    def uri(self) -> str:
        """The pinned URI, ``models:/name/version``."""
        return f"models:/{self.name}/{self.version}"


def load_pinned(
    node: ModelNode,
    pinned: ResolvedModel,
    tracking_uri: str | None,
    *,
    pickle_allowed: bool = False,
) -> Model:
    """Load ``node``'s model at ``pinned`` without an MLflow tracking client (a worker's load).

    Downloads the pin's artifact ``source`` (a URI: no registry lookup), hashes the very copy
    the model is built from and refuses it unless it equals the pinned digest, which the driver
    checked against the digest registered for the version before any worker started
    (`Registry.check_pins`): so the registered digest stays the reference, and each worker saves
    the ~2 s of building MLflow's tracking store client.

    Raises:
        RegistryError: The artifacts cannot be downloaded, or hash differently than registered
            (names node, file, line, version and both digests).
    """
    from graphops.models import load_model

    where = where_of(node)
    found = Version(pinned.name, pinned.version, pinned.source, pinned.digest)
    with fetched(found, tracking_uri, where) as path:
        as_pinned(pinned, content_hash(path), where)
        return load_model(node, path, pinned.uri, pickle_allowed=pickle_allowed)


def _local_source(source: str) -> Path | None:
    """The folder or file of a ``file://`` (or plain absolute path) artifact source, else None.

    A replica of a local store's model then imports no MLflow (about 30 MB per replica,
    docs/performance.md); the digest check that follows is the same.
    """
    parsed = urlsplit(source)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    if not parsed.scheme and source.startswith("/"):
        return Path(source)
    return None


def as_pinned(pinned: ResolvedModel, digest: str, where: Where) -> None:
    """Refuse artifacts whose ``digest`` is not the pin's, naming both."""
    if digest != pinned.digest:
        raise RegistryError(
            f"The artifacts of {pinned.uri} changed since they were pinned "
            f"(digest {digest[:19]}, expected {pinned.digest[:19]}).",
            fix="Artifacts must never be overwritten: register a new version and re-validate.",
            **where,
        )


@contextmanager
def fetched(found: Version, tracking_uri: str | None, where: Where) -> Iterator[Path]:
    """A private copy of a version's artifacts, deleted afterwards.

    Every load downloads afresh into its own folder, so the digest check is real and parallel
    workers (Ray actors) never race on a shared cache.
    """
    local = _local_source(found.source)
    if local is not None:  # a local store: copied as MLflow would, without importing MLflow
        with tempfile.TemporaryDirectory(prefix=f"graphops-{found.name}-{found.version}-") as tmp:
            copy = Path(tmp) / local.name
            try:
                if local.is_dir():
                    shutil.copytree(local, copy)
                else:
                    shutil.copy2(local, copy)
            except OSError as exc:
                raise RegistryError(
                    f"Could not copy the artifacts of {found.uri} from {found.source}: {exc}",
                    fix="Check that the artifact store is readable here and the version was "
                    "not deleted.",
                    **where,
                ) from exc
            yield copy
        return

    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    # MLflow draws a progress bar per download of several files: noise in every worker's log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    with tempfile.TemporaryDirectory(prefix=f"graphops-{found.name}-{found.version}-") as tmp:
        try:
            got = download_artifacts(
                artifact_uri=found.source, dst_path=tmp, tracking_uri=tracking_uri
            )
        except (MlflowException, OSError) as exc:
            raise RegistryError(
                f"Could not download the artifacts of {found.uri} from {found.source}: {exc}",
                fix="Check that the artifact store is reachable and the version was not deleted.",
                **where,
            ) from exc
        yield Path(got)
