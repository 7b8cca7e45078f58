"""MLflow's store and registry: tracking store location, model resolution, loading, registration.

With `graphops.registry._records` (validation and rollout runs, a base class of `Registry`) and
`graphops.registry._pinned` (a pinned version, loaded without a registry client) the only
modules that import MLflow.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphops.errors import RegistryError, Where, did_you_mean
from graphops.graph import (
    Graph,
    ModelNode,
    ModelURI,
    content_hash,
    manifest_hash,
    manifest_of,
    read_package,
)
from graphops.models._format import MLMODEL_FILE
from graphops.registry._integrity import DIGEST_TAG, Version, verified, where_of
from graphops.registry._pinned import ResolvedModel, as_pinned, fetched, load_pinned
from graphops.registry._records import RunRecords

if TYPE_CHECKING:  # MLflow and torch are imported when first used: `graphops render` needs neither
    from mlflow import MlflowClient

    from graphops.models import Model

CONTENT_TAG = "graphops.content"
"""Model version tag: the digest of the model's own files (`model_content`), what re-registration
compares to reuse a version."""
METADATA = frozenset({MLMODEL_FILE, "conda.yaml", "python_env.yaml", "requirements.txt"})
"""Files MLflow's ``save_model`` writes beside a model that differ from one save to the next."""
WORK_DIR = ".graphops"
"""Per-repository work folder (git-ignored): the default MLflow store and its artifacts."""
# MLflow's sqlite store logs every schema migration at INFO on first use; keep our output readable.
_log = logging.getLogger(__name__)
logging.getLogger("alembic").setLevel(logging.WARNING)
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


class Registry(RunRecords):
    """MLflow tracking + model registry, defaulting to sqlite under ``<repo>/.graphops``.

    Args:
        work_dir: Folder for the default sqlite store and its artifacts.
        tracking_uri: MLflow tracking URI; defaults to ``$MLFLOW_TRACKING_URI``, then sqlite.
        pickle_allowed: Registered model names a platform team allowed to load by unpickling
            (``models.pickle_allowed`` of ``environment.yaml``); every other pickled model is
            refused.
    """

    def __init__(
        self,
        work_dir: Path,
        tracking_uri: str | None = None,
        *,
        pickle_allowed: Iterable[str] = (),
    ) -> None:
        self.pickle_allowed = frozenset(pickle_allowed)
        self.formats: dict[str, str] = {}
        """The format of each version resolved or loaded here, by ``models:/name/N``."""
        self.work_dir = work_dir.resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = (
            tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{self.work_dir / 'mlflow.db'}"
        )

    @cached_property
    def client(self) -> MlflowClient:
        """MLflow's client for the tracking store and the registry (created on first use)."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    @classmethod
    def for_repo(
        cls, repo: Path, tracking_uri: str | None = None, *, pickle_allowed: Iterable[str] = ()
    ) -> Registry:
        """The registry of a repository (``<repo>/.graphops`` unless a tracking URI is set)."""
        return cls(repo / WORK_DIR, tracking_uri, pickle_allowed=pickle_allowed)

    # -- resolution --------------------------------------------------------------------------

    def resolve(self, uri: ModelURI | str, *, where: Where | None = None) -> ResolvedModel:
        """Pin ``uri`` to an exact version and verify its artifacts against the registered digest.

        The digest recorded when the version was registered (model version tag
        ``graphops.digest``) is the reference: artifacts that hash differently were changed in
        the store and are refused, as is a version that records no digest.

        Args:
            uri: ``models:/name@alias`` or ``models:/name/N``.
            where: The model node being resolved (node, file, line), named in errors.

        Raises:
            RegistryError: The model, version or alias does not exist (lists what does), or its
                artifacts do not match the registered digest (names both).
        """
        ref = ModelURI.parse(uri) if isinstance(uri, str) else uri
        found = self._lookup(ref, where or {})
        with self._fetch(found, where or {}) as path:
            self._detect(found, path, where or {})
            digest = self._verified(found, path, where or {})
        return ResolvedModel(
            name=ref.name,
            version=found.version,
            alias=ref.alias,
            digest=digest,
            source=found.source,
        )

    def _lookup(self, ref: ModelURI, where: Where) -> Version:
        """The version a reference names, or a `RegistryError` listing what exists."""
        names = [m.name for m in self.client.search_registered_models()]
        if ref.name not in names:
            raise RegistryError(
                f'No registered model "{ref.name}" in {self.tracking_uri}.{did_you_mean(ref.name, names)}',
                fix=f"Registered models: {', '.join(sorted(names)) or 'none'}. "
                "Train and register it first (e.g. `graphops train <graph>`).",
                **where,
            )
        if ref.alias is not None:
            aliases = self.client.get_registered_model(ref.name).aliases
            if ref.alias not in aliases:
                raise RegistryError(
                    f'Model "{ref.name}" has no alias "{ref.alias}".{did_you_mean(ref.alias, aliases)}',
                    fix=f"Aliases: {_listing(aliases) or 'none'}. "
                    f"Set one with MlflowClient().set_registered_model_alias('{ref.name}', ...).",
                    **where,
                )
            version = int(aliases[ref.alias])
        else:
            assert ref.version is not None  # ModelURI.parse sets an alias or a version
            version = ref.version
        return self._version(ref.name, version, where)

    def _version(self, name: str, version: int, where: Where) -> Version:
        """One registered version: its artifact source and the digest recorded at registration."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            versions = sorted(
                int(v.version) for v in self.client.search_model_versions(f"name='{name}'")
            )
            raise RegistryError(
                f'Model "{name}" has no version {version}.',
                fix=f"Versions: {', '.join(map(str, versions)) or 'none'}.",
                **where,
            ) from exc
        if not mv.source:
            raise RegistryError(
                f'Version {version} of model "{name}" records no artifact source.',
                fix="Register the model again (e.g. `graphops train <graph>`).",
                **where,
            )
        return Version(name, version, self._storage(mv.source), (mv.tags or {}).get(DIGEST_TAG))

    def _storage(self, source: str) -> str:
        """Where a version's files are stored: a logged model's (``models:/m-...``) resolved.

        MLflow 3's flavors (``mlflow.xgboost.log_model(..., registered_model_name=...)``)
        register a version whose source is its logged model; pins, the artifact-store checks of
        render and apply, and workers need the storage URI behind it.
        """
        if not source.startswith("models:/m-"):
            return source
        return str(self.client.get_logged_model(source.removeprefix("models:/")).artifact_location)

    # -- loading -----------------------------------------------------------------------------

    def load(self, node: ModelNode, pinned: ResolvedModel | None = None) -> Model:
        """Load the model of ``node`` on its device, verifying the artifact digest.

        The artifacts are hashed once, from the very copy the model is built from, and compared
        with the digest registered for the version and with the pin (when given).

        Args:
            node: The model node (its architecture and resources decide how and where).
            pinned: A pinned version (e.g. from a lock); resolved from ``node.uri`` when omitted.

        Raises:
            RegistryError: Missing model, or artifacts whose digest differs from the registered or
                the pinned one (names node, file, line, version and both digests).
        """
        return self._load(node, pinned)[0]

    def load_models(
        self, graph: Graph, pins: Mapping[str, ResolvedModel] | None = None
    ) -> tuple[dict[str, Model], dict[str, ResolvedModel]]:
        """Load every model node of ``graph`` (at its pin, else resolving its URI now).

        Returns:
            (loaded model per node name, pinned version per node name).
        """
        loaded = {n.name: self._load(n, (pins or {}).get(n.name)) for n in graph.model_nodes}
        return {k: v[0] for k, v in loaded.items()}, {k: v[1] for k, v in loaded.items()}

    def check_pins(self, graph: Graph, pins: Mapping[str, ResolvedModel]) -> None:
        """Refuse pins whose digest is not the one registered for their version (metadata only).

        What lets workers load with `load_pinned` (no tracking client, artifacts checked against
        the pin): the pin itself is checked here once, against the registry, on the driver.

        Raises:
            RegistryError: A model node has no pin, or its pin's version does not exist or
                records another digest (names node, version and both digests).
        """
        for node in graph.model_nodes:
            where = where_of(node)
            pin = pins.get(node.name)
            if pin is None:
                raise RegistryError(
                    f"No pinned model version for model node {node.name}.",
                    fix="Pass every model node's ResolvedModel (Registry.resolve or the lock).",
                    **where,
                )
            found = self._version(pin.name, pin.version, where)
            if found.registered != pin.digest:
                raise RegistryError(
                    f"{pin.uri} is pinned at digest {pin.digest}, but "
                    f"{found.registered or 'no digest'} is registered for it.",
                    fix="Pin what the registry holds: re-resolve the model (or re-promote the "
                    "lock) and re-validate.",
                    **where,
                )

    def _load(self, node: ModelNode, pinned: ResolvedModel | None) -> tuple[Model, ResolvedModel]:
        """Download once, hash, compare with the registered digest and the pin, build the model."""
        from graphops.models import load_model

        where = where_of(node)
        if pinned is None:
            found = self._lookup(node.uri, where)
        else:
            found = self._version(pinned.name, pinned.version, where)
        with self._fetch(found, where) as path:
            digest = self._verified(found, path, where)
            if pinned is not None:
                as_pinned(pinned, digest, where)
            loaded = load_model(  # detects the format itself: no second read of the files
                node, path, found.uri, pickle_allowed=found.name in self.pickle_allowed
            )
        if pinned is None:
            pinned = ResolvedModel(
                name=node.uri.name,
                version=found.version,
                alias=node.uri.alias,
                digest=digest,
                source=found.source,
            )
        return loaded, pinned

    def _detect(self, found: Version, path: Path, where: Where) -> str:
        """The format of a version's files (kept in `formats`, a pickled one marked so).

        Refuses a pickled model no platform team allowed (`graphops.models.detect`).
        """
        from graphops.models import PICKLE_OPT_IN, Artifacts, detect

        allowed = found.name in self.pickle_allowed
        artifacts = Artifacts.read(path, found.uri)
        fmt = detect(artifacts, where, pickle_allowed=allowed)
        name = fmt.name
        if fmt.name == "pyfunc" or fmt.pickled(artifacts) is not None:
            name += f" (unpickled: {PICKLE_OPT_IN})"
        self.formats[found.uri] = name
        return name

    def _verified(self, found: Version, path: Path, where: Where) -> str:
        """The digest of ``path``, verified against the registered one (`verified`).

        A version an MLflow flavor logged without graphops records no digest: its digest is
        recorded now, at its first resolution (the model version tag ``graphops.digest``), and
        is the reference from then on. A version in graphops' own layout without one was
        registered before digests and stays refused.
        """
        digest = content_hash(path)
        if found.registered is None and (path / MLMODEL_FILE).is_file():
            self.client.set_model_version_tag(found.name, str(found.version), DIGEST_TAG, digest)
            _log.info("Recorded the digest of %s at its first use: %s", found.uri, digest)
            found = Version(found.name, found.version, found.source, digest)
        return verified(found, digest, where)

    @contextmanager
    def _fetch(self, found: Version, where: Where) -> Iterator[Path]:
        """A private copy of a version's artifacts, deleted afterwards (see `fetched`)."""
        with fetched(found, self.tracking_uri, where) as path:
            yield path

    # -- registration ------------------------------------------------------------------------

    def register_torch(
        self,
        *,
        name: str,
        module: Any,
        config: Mapping[str, Any],
        alias: str,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        description: str = "",
    ) -> ResolvedModel:
        """Log a torch module (safetensors + config) as a run and register it under ``alias``.

        Idempotent: when a version with identical artifacts exists, it is reused (no new run) and
        the alias is moved to it.

        Args:
            name: Registered model name.
            module: The trained ``torch.nn.Module``; its class must be the node's architecture.
            config: Constructor keyword arguments (JSON values) that rebuild the architecture.
            alias: Alias to point at the version, e.g. ``"champion"``.
            params: Training parameters to log on the run.
            metrics: Training metrics to log on the run.
            description: Description of the model version.

        Returns:
            The registered version, pinned.
        """
        from graphops.models import save_torch

        with tempfile.TemporaryDirectory() as tmp:
            local = save_torch(module, dict(config), Path(tmp) / "model")
            return self._register(name, local, alias, params, metrics, description)

    def register_flavor(
        self,
        *,
        name: str,
        flavor: str,
        model: Any,
        alias: str | None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        description: str = "",
        **save_kwargs: Any,
    ) -> ResolvedModel:
        """Save ``model`` with MLflow's own ``mlflow.<flavor>.save_model`` and register it.

        The version is a normal MLflow model (its ``MLmodel`` names the flavor; the MLflow UI
        shows it as such) with graphops' digest recorded. Idempotent like `register_torch`:
        a version whose model files (all but MLflow's metadata: ``MLmodel``, environment files)
        are identical is reused and the alias moved to it.

        Args:
            name: Registered model name.
            flavor: The MLflow flavor module: ``onnx``, ``xgboost``, ``lightgbm``, ``sklearn``,
                ``transformers``. One that saves by pickling is refused when loaded.
            model: What the flavor's ``save_model`` takes (a Booster, an ONNX ModelProto...).
            alias: Alias to point at the version, e.g. ``"champion"``; None: no alias (set
                one later with `set_alias`, e.g. once a conversion is proved).
            params: Training parameters to log on the run.
            metrics: Training metrics to log on the run.
            description: Description of the model version.
            save_kwargs: Passed to ``save_model`` (e.g. ``serialization_format="skops"``).

        Returns:
            The registered version, pinned.
        """
        import importlib

        module = importlib.import_module(f"mlflow.{flavor}")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model"
            module.save_model(model, str(local), **save_kwargs)
            from graphops.models import FORMATS

            for fmt in FORMATS.values():
                if fmt.flavor == flavor:
                    fmt.normalise(local)
            return self._register(name, local, alias, params, metrics, description)

    def _register(
        self,
        name: str,
        local: Path,
        alias: str | None,
        params: Mapping[str, Any] | None,
        metrics: Mapping[str, float] | None,
        description: str,
    ) -> ResolvedModel:
        """Register the model files in ``local`` (or reuse an identical version), set ``alias``."""
        digest = content_hash(local)
        content = model_content(local)
        self._ensure_registered_model(name)
        existing = self._version_with_content(name, content)
        if existing is None:
            existing = self._create_version(
                name,
                local,
                {DIGEST_TAG: digest, CONTENT_TAG: content},
                params,
                metrics,
                description,
            )
        if alias is None:
            return self.resolve(ModelURI(name, version=existing))
        self.client.set_registered_model_alias(name, alias, str(existing))
        return self.resolve(ModelURI(name, alias=alias))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of registered model ``name`` at ``version``."""
        self.client.set_registered_model_alias(name, alias, str(version))

    def version_tags(self, name: str, version: int) -> dict[str, str]:
        """The tags of one registered version (``graphops.*`` and any other)."""
        return dict(self.client.get_model_version(name, str(version)).tags or {})

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set tags on one registered version (e.g. ``graphops.converted_from``)."""
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, value)

    def record_run(
        self,
        *,
        experiment: str,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        passed: bool,
    ) -> str:
        """Log one finished run (FAILED unless ``passed``) in ``experiment``; returns its id."""
        run = self.client.create_run(
            self.experiment_id(experiment), run_name=run_name, tags=dict(tags)
        )
        run_id = run.info.run_id
        for key, value in params.items():
            self.client.log_param(run_id, key, value)
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, float(value))
        self.client.set_terminated(run_id, "FINISHED" if passed else "FAILED")
        return run_id

    def _ensure_registered_model(self, name: str) -> None:
        """Create registered model ``name`` unless it exists."""
        if not self.client.search_registered_models(filter_string=f"name='{name}'"):
            self.client.create_registered_model(name)

    def _version_with_content(self, name: str, content: str) -> int | None:
        """A version with these model files whose stored files still hash to its digest."""
        for mv in self.client.search_model_versions(f"name='{name}'"):
            tags = mv.tags or {}
            registered = tags.get(DIGEST_TAG)
            if registered and mv.source and tags.get(CONTENT_TAG, registered) == content:
                found = Version(name, int(mv.version), self._storage(mv.source), registered)
                with self._fetch(found, {}) as path:
                    if content_hash(path) == registered:
                        return found.version
        return None

    def _create_version(
        self,
        name: str,
        local: Path,
        tags: Mapping[str, str],
        params: Mapping[str, Any] | None,
        metrics: Mapping[str, float] | None,
        description: str,
    ) -> int:
        run = self.client.create_run(self.experiment_id(f"train/{name}"), run_name=f"train-{name}")
        run_id = run.info.run_id
        for key, value in (params or {}).items():
            self.client.log_param(run_id, key, value)
        for key, value in (metrics or {}).items():
            self.client.log_metric(run_id, key, float(value))
        self.client.log_artifacts(run_id, str(local), artifact_path="model")
        self.client.set_terminated(run_id)
        mv = self.client.create_model_version(
            name,
            source=f"{run.info.artifact_uri}/model",
            run_id=run_id,
            tags=dict(tags),
            description=description,
        )
        return int(mv.version)


def model_content(local: Path) -> str:
    """The digest of a model's own files: all but MLflow's metadata, which differs per save."""
    files = manifest_of(read_package(local))
    return manifest_hash({k: v for k, v in files.items() if k.rsplit("/", 1)[-1] not in METADATA})


def _listing(aliases: Mapping[str, Any]) -> str:
    return ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items()))


# `_pinned`'s names stay importable from here, where they were first.
__all__ = ["WORK_DIR", "Registry", "ResolvedModel", "as_pinned", "fetched", "load_pinned"]
