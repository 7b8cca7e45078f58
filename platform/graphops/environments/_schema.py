"""The schemas of `environment.yaml` and `release.yaml` (pydantic; unknown keys rejected)."""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from graphops._models import FrozenModel
from graphops.environments.rollout import RolloutConfig
from graphops.features import FeaturesConfig
from graphops.graph import manifest_hash
from graphops.registry import ResolvedModel
from graphops.runtime.schema import DeploymentOverride

QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?")
"""A Kubernetes memory quantity, e.g. 8Gi."""
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
SSH_KEY_TYPE = re.compile(r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-\S+@openssh\.com)$")
"""An OpenSSH public key type, as in a .pub file or an allowed_signers line."""


class Image(FrozenModel):
    """A container image, pinned by digest once CI has built it."""

    repository: Annotated[
        str, Field(description="Image repository, e.g. ghcr.io/acme/graphops.")
    ] = "rayproject/ray"
    tag: Annotated[str, Field(description="Image tag, e.g. 0.1.0.")] = "2.60.0-py311"
    digest: Annotated[
        str | None,
        Field(
            description="sha256:<64 hex> of the built image, written by CI's image job through "
            "a promotion commit; None: not built yet (the tag alone is rendered)."
        ),
    ] = None

    @field_validator("digest")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is not None and not DIGEST.fullmatch(value):
            raise ValueError("an image digest is sha256: followed by 64 lowercase hex digits")
        return value

    @property
    def reference(self) -> str:
        """``repository:tag@digest`` (or ``repository:tag`` before CI pinned the digest)."""
        ref = f"{self.repository}:{self.tag}"
        return f"{ref}@{self.digest}" if self.digest else ref


class PodGroup(FrozenModel):
    """The resources of one Ray pod (its container's requests, equal to its limits)."""

    cpus: Annotated[float, Field(gt=0, description="CPUs of each pod (request = limit).")] = 2
    memory: Annotated[
        str, Field(description="Memory of each pod, a Kubernetes quantity (request = limit).")
    ] = "8Gi"
    gpus: Annotated[int, Field(ge=0, description="nvidia.com/gpu of each pod (0: a CPU pod).")] = 0

    @field_validator("memory")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not QUANTITY.fullmatch(value):
            raise ValueError("memory is a Kubernetes quantity such as 8Gi or 512Mi")
        return value


class WorkerGroup(PodGroup):
    """A worker group of the RayService: its pods and how many of them."""

    min_replicas: Annotated[int, Field(ge=0, description="Fewest pods (autoscaling floor).")] = 1
    max_replicas: Annotated[int, Field(ge=1, description="Most pods (autoscaling ceiling).")] = 4
    replicas: Annotated[
        int | None, Field(ge=0, description="Pods at creation; None: min_replicas.")
    ] = None

    @model_validator(mode="after")
    def _bounds(self) -> WorkerGroup:
        start = self.min_replicas if self.replicas is None else self.replicas
        if not self.min_replicas <= start <= self.max_replicas:
            raise ValueError(
                f"min_replicas {self.min_replicas} <= replicas {start} <= max_replicas "
                f"{self.max_replicas} must hold"
            )
        return self


class ClusterConfig(FrozenModel):
    """Where the environment's Ray cluster is and how to reach it."""

    dashboard: Annotated[
        str | None,
        Field(description="Ray dashboard URL (Serve REST API), e.g. http://127.0.0.1:8265."),
    ] = None
    dashboard_env: Annotated[
        str | None,
        Field(description="Name of the environment variable holding the dashboard URL instead."),
    ] = None
    serve_url: Annotated[
        str | None,
        Field(
            description="Base URL of the cluster's Serve HTTP proxy, for smoke tests and status."
        ),
    ] = None
    serve_url_env: Annotated[
        str | None,
        Field(description="Name of the environment variable holding the Serve URL instead."),
    ] = None
    token_env: Annotated[
        str | None,
        Field(
            description="Name of the environment variable holding the cluster's token; None: "
            "Ray's own lookup (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)."
        ),
    ] = None
    gpus: Annotated[
        bool, Field(description="Whether the cluster has GPUs; without, GPU requests become 0.")
    ] = False
    app_cpu_budget: Annotated[
        float | None,
        Field(
            gt=0,
            description="Scale each application's CPU requests down to at most this many CPUs "
            "(a small cluster must fit two versions side by side during a rollout); None: as "
            "the graph declares.",
        ),
    ] = None
    image: Annotated[
        Image,
        Field(
            description="The container image every Ray pod runs (graphops and its dependencies "
            "installed; with code.mode image, the graphs too)."
        ),
    ] = Image()
    head: Annotated[PodGroup, Field(description="The head pod of the rendered RayService.")] = (
        PodGroup()
    )
    worker_groups: Annotated[
        dict[str, WorkerGroup],
        Field(
            description="Worker groups of the rendered RayService, by name: a CPU group, and a "
            "GPU group (gpus > 0) where cluster.gpus is true."
        ),
    ] = {}
    autoscaling: Annotated[
        bool,
        Field(
            description="KubeRay's in-tree autoscaler: workers scale between their min and max "
            "replicas with Serve's demand."
        ),
    ] = True
    token_secret: Annotated[
        str | None,
        Field(
            description="Kubernetes Secret (key auth_token) holding the Ray token KubeRay and "
            "the pods share (authOptions.secretName); None: KubeRay generates one per cluster."
        ),
    ] = None
    mlflow_secret: Annotated[
        str | None,
        Field(
            description="Kubernetes Secret whose keys become the Ray containers' environment "
            "(MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN, ...); None: none."
        ),
    ] = None

    @model_validator(mode="after")
    def _gpu_groups(self) -> ClusterConfig:
        gpu = [n for n, g in self.worker_groups.items() if g.gpus]
        if self.worker_groups and self.gpus and not gpu:
            raise ValueError(
                "cluster.gpus is true but no worker group has gpus > 0: add a GPU group to "
                "cluster.worker_groups (or set gpus: false)"
            )
        if gpu and not self.gpus:
            raise ValueError(
                f"worker group(s) {', '.join(gpu)} have GPUs but cluster.gpus is false: set "
                "gpus: true (or remove their gpus)"
            )
        return self


PACKAGE_URI = re.compile(r"gcs://_ray_pkg_[0-9a-f]{16,64}\.zip")
"""The only code package a lock may name: Ray's content-addressed package, uploaded by apply."""
CODE_SCHEMES = ("https://", "s3://", "gs://", "file://")
"""Schemes a ``code.working_dir`` template may use (Ray's remote URIs, and file for local)."""


CodeMode = Literal["gcs", "uri", "image"]
STORE_SCHEMES = ("file://", "s3://", "gs://", "https://")
"""Schemes of a ``code.store``: where promote (file://) or CI (object stores) publish zips."""


class CodeConfig(FrozenModel):
    """How graph code reaches the cluster (docs/environments.md, "Code delivery")."""

    mode: Annotated[
        CodeMode | None,
        Field(
            description="gcs: the lock's Ray package, uploaded by `graphops apply` (the rendered "
            "files deploy only through it); uri: a zip the cluster downloads (code.store or "
            "code.working_dir); image: the graphs baked into cluster.image (no working_dir). "
            "None: uri when code.store or code.working_dir is set, else gcs."
        ),
    ] = None
    store: Annotated[
        str | None,
        Field(
            description="mode uri: the folder URI holding content-addressed zips "
            "<store>/<graph>-<package hash>.zip, published by `graphops promote` (file://) or by "
            "CI (s3://, gs://, https://), e.g. file:///var/tmp/graphops/packages."
        ),
    ] = None
    working_dir: Annotated[
        str | None,
        Field(
            description="mode uri: a URI template with {commit}, e.g. "
            "https://github.com/acme/graphs/archive/{commit}.zip (an archive published by "
            "someone else; apply verifies it holds the locked code)."
        ),
    ] = None
    image_root: Annotated[
        str,
        Field(description="mode image: the folder of the image holding graphs/ (its WORKDIR)."),
    ] = "/opt/graphops"

    @field_validator("store")
    @classmethod
    def _store_form(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(STORE_SCHEMES) or value.endswith((".zip", "/")):
            raise ValueError(
                f"a code store is a folder URI starting with one of {', '.join(STORE_SCHEMES)}, "
                "without a trailing slash, e.g. file:///var/tmp/graphops/packages"
            )
        if value.startswith("file://") and not value.startswith("file:///"):
            raise ValueError("a file:// store names an absolute path: file:///<path>")
        return value

    @field_validator("working_dir")
    @classmethod
    def _declared_form(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(CODE_SCHEMES) or not value.endswith(".zip"):
            raise ValueError(
                f"a code URI template must start with one of {', '.join(CODE_SCHEMES)} and "
                "name a .zip archive (Ray's remote working_dir)"
            )
        if value.count("{commit}") != 1 or re.search(r"\{(?!commit\})", value):
            raise ValueError(
                "a code URI template must hold {commit} exactly once and no other placeholder, "
                "so every lock's code is fetched at its own commit"
            )
        return value

    pip: Annotated[
        tuple[str, ...],
        Field(description="Extra pip requirements of the replicas (runtime_env.pip)."),
    ] = ()

    @model_validator(mode="after")
    def _coherent(self) -> CodeConfig:
        mode = self.delivery
        if mode == "uri" and (self.store is None) == (self.working_dir is None):
            raise ValueError(
                "mode uri needs exactly one of code.store (zips published by promote/CI) and "
                "code.working_dir (a {commit} template)"
            )
        if mode != "uri" and (self.store or self.working_dir):
            raise ValueError(
                f"mode {mode} ships no zip: remove code.store/code.working_dir, or set mode: uri"
            )
        return self

    @property
    def delivery(self) -> CodeMode:
        """The effective mode (``mode``, or what store/working_dir imply)."""
        if self.mode is not None:
            return self.mode
        return "uri" if self.store or self.working_dir else "gcs"


MODEL_SCHEMES = ("mlflow-artifacts:", "s3://", "gs://", "https://", "wasbs://", "abfss://")
"""Artifact stores every node of a remote cluster can read (not this machine's file:// paths)."""


class ModelsConfig(FrozenModel):
    """Where replicas load models from, and which artifact stores the cluster's nodes can read."""

    tracking_uri: Annotated[
        str | None,
        Field(
            description="MLflow tracking server replicas load models from, e.g. "
            "http://127.0.0.1:5000; None: the cluster's $MLFLOW_TRACKING_URI."
        ),
    ] = None
    artifact_stores: Annotated[
        tuple[str, ...],
        Field(
            description="URI prefixes of the artifact stores every node can read; a lock whose "
            "model source starts with none of them is refused by render and apply. file:// only "
            "where every node shares this machine's filesystem."
        ),
    ] = MODEL_SCHEMES


class PolicyConfig(FrozenModel):
    """What a graph version must have passed before it may be promoted here."""

    upstream: Annotated[
        str | None,
        Field(description="Environment whose verification is required first (None: none)."),
    ] = None
    soak_minutes: Annotated[
        float,
        Field(ge=0, description="Minimum time the same lock must have been live upstream."),
    ] = 0
    require_validation: Annotated[
        bool, Field(description="A passed validation record for exactly this lock is required.")
    ] = True
    require_trusted_record: Annotated[
        bool,
        Field(
            description="The validation record must have been written by the trusted CI job "
            "(on a merged commit), not by a pull request's job or a laptop."
        ),
    ] = False
    min_replicas: Annotated[
        int,
        Field(
            ge=1,
            description="Replica floor of every deployment of every graph here (autoscaling "
            "lower bounds included): 2 or more means losing one replica is not an outage.",
        ),
    ] = 1
    require_signed_commits: Annotated[
        bool,
        Field(
            description="apply and the controller refuse the environment unless every commit "
            "that changed environments/<env>/ or environments/base/ since the requirement was "
            "on is SSH-signed by one of allowed_signers (git verify-commit; docs/security.md)."
        ),
    ] = False
    allowed_signers: Annotated[
        tuple[str, ...],
        Field(
            description="Who may sign this environment's commits: lines of git's "
            "allowed_signers file, `<principal> <key type> <base64 key> [comment]`, e.g. "
            "`release@acme.dev ssh-ed25519 AAAAC3Nza...`."
        ),
    ] = ()

    @field_validator("allowed_signers")
    @classmethod
    def _signer_lines(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for line in value:
            fields = line.split()  # principal [options] key-type key [comment]
            typed = [i for i, f in enumerate(fields[1:3], 1) if SSH_KEY_TYPE.match(f)]
            if "\n" in line or not typed or typed[0] + 1 >= len(fields):
                raise ValueError(
                    f'"{line[:60]}" is no allowed_signers line: write `<principal> <key type> '
                    "<base64 key>`, e.g. `release@acme.dev ssh-ed25519 AAAAC3Nza...` (the .pub "
                    "file's text after a principal)"
                )
        return value

    @model_validator(mode="after")
    def _signers_when_required(self) -> PolicyConfig:
        if self.require_signed_commits and not self.allowed_signers:
            raise ValueError(
                "require_signed_commits is true but allowed_signers is empty: list the SSH "
                "public keys that may sign this environment's commits"
            )
        return self


class EnvironmentConfig(FrozenModel):
    """`environments/<env>/environment.yaml` merged over `environments/base/environment.yaml`."""

    name: Annotated[str, Field(description="Environment name (its folder).")]
    cluster: ClusterConfig = ClusterConfig()
    code: CodeConfig = CodeConfig()
    models: ModelsConfig = ModelsConfig()
    policy: PolicyConfig = PolicyConfig()
    http_port: Annotated[int, Field(ge=1, le=65535, description="Serve HTTP port.")] = 8000
    http_host: Annotated[
        str, Field(description="Address Serve's HTTP proxy listens on (127.0.0.1: loopback only).")
    ] = "0.0.0.0"
    features: Annotated[
        FeaturesConfig,
        Field(
            description="The feature store lookup nodes read here (default: embedded, from each "
            "table's Parquet source); see docs/features.md."
        ),
    ] = FeaturesConfig()
    rollout: Annotated[
        RolloutConfig,
        Field(
            description="How apply rolls out a new version: blue_green (default), canary or "
            "shadow_canary; see graphops.controller.rollout."
        ),
    ] = RolloutConfig()


class GraphLock(FrozenModel):
    """Exactly what was validated and is promoted: the same lock is what is served."""

    version: Annotated[str, Field(description="Graph version.")]
    content_hash: Annotated[str, Field(description="Content hash of the graph package.")]
    manifest: Annotated[
        dict[str, str] | None,
        Field(
            description="Each file of graphs/<graph>/ -> its sha256: what every worker compares "
            "its code with, file by file, before importing any of it (hashes to content_hash). "
            "Unset only in locks made before graphops 0.2, which must be locked again."
        ),
    ] = None
    commit: Annotated[str, Field(description="Git commit the lock was taken at.")]
    models: Annotated[
        dict[str, ResolvedModel],
        Field(description="Model node -> exact registry version and artifact digest."),
    ] = {}
    validation_run: Annotated[
        str | None, Field(description="MLflow run of the passed validation of this lock.")
    ] = None
    package: Annotated[
        str,
        Field(
            description="Ray package URI of the graphs/ folder at the commit "
            "(gcs://_ray_pkg_<content hash>.zip): what replicas run when the environment ships "
            "code as a package."
        ),
    ]
    example: Annotated[
        dict[str, Any] | None,
        Field(description="One request object: the OpenAPI example and the smoke test of apply."),
    ] = None

    @model_validator(mode="after")
    def _manifest_matches(self) -> GraphLock:
        if self.manifest is not None and manifest_hash(self.manifest) != self.content_hash:
            raise ValueError(
                f"the manifest hashes to {manifest_hash(self.manifest)[:19]}, not to the "
                f"content_hash {self.content_hash[:19]}: a lock is written by `graphops "
                "promote`, never by hand"
            )
        return self

    @field_validator("package")
    @classmethod
    def _content_addressed(cls, value: str) -> str:
        if not PACKAGE_URI.fullmatch(value):
            raise ValueError(
                "a lock's code package must be Ray's content-addressed gcs://_ray_pkg_<hex>.zip, "
                "which apply rebuilds from the locked commit and verifies before upload; any "
                "other code source is declared in environment.yaml (code.working_dir)"
            )
        return value

    platform_version: Annotated[str, Field(description="graphops version that locked it.")]
    request_fields: Annotated[
        tuple[str, ...],
        Field(description="Top-level fields of the request schema (what a sticky key may name)."),
    ] = ()


class Arm(FrozenModel):
    """Another pinned version of the graph that takes a share of the stable route's traffic."""

    lock: GraphLock
    weight: Annotated[float, Field(ge=0, le=100, description="Percent of requests it answers.")]
    promoted_at: Annotated[
        datetime.datetime, Field(description="When the arm was added (UTC); its soak starts here.")
    ]
    deployments: Annotated[
        dict[str, DeploymentOverride],
        Field(description="The arm's own per-deployment scaling/resource overrides."),
    ] = {}


class Shadow(FrozenModel):
    """A pinned version that gets a copy of some requests; its answers are recorded, never returned."""

    lock: GraphLock
    percent: Annotated[
        float, Field(gt=0, le=100, description="Percent of requests copied to it, asynchronously.")
    ]
    promoted_at: Annotated[datetime.datetime, Field(description="When it was added (UTC).")]
    deployments: Annotated[
        dict[str, DeploymentOverride],
        Field(description="Its own per-deployment scaling/resource overrides."),
    ] = {}


class Traffic(FrozenModel):
    """An experiment on the graph's stable route: weighted arms, stickiness, shadow traffic.

    The entry's own lock is the control arm with ``weight``; ``arms`` are the other versions, by
    version. Weights must sum to 100. Changing weights is an in-place update (no replica restarts).
    """

    weight: Annotated[
        float, Field(ge=0, le=100, description="Percent of requests the entry's own lock answers.")
    ] = 100
    sticky_key: Annotated[
        str | None,
        Field(
            description="Request field whose value picks the arm (same value, same arm); "
            "None: each request is assigned at random."
        ),
    ] = None
    arms: Annotated[
        dict[str, Arm], Field(description="Version -> the other arms of the experiment.")
    ] = {}
    shadow: Annotated[Shadow | None, Field(description="Shadow traffic to a candidate.")] = None
    output: Annotated[
        str | None,
        Field(
            description="Response field whose distribution is measured per arm (default: the "
            "first field of the response)."
        ),
    ] = None


class ReleaseEntry(FrozenModel):
    """One graph in an environment: its lock, when it was promoted, per-environment overrides."""

    lock: GraphLock
    promoted_at: Annotated[
        datetime.datetime, Field(description="When the promotion was committed (UTC).")
    ]
    deployments: Annotated[
        dict[str, DeploymentOverride],
        Field(description="Per-deployment scaling/resource overrides in this environment."),
    ] = {}
    traffic: Annotated[
        Traffic | None,
        Field(description="An A/B experiment and/or shadow traffic (None: the lock takes all)."),
    ] = None

    @property
    def validation_run(self) -> str | None:
        """The validation run of the lock."""
        return self.lock.validation_run


class Release(FrozenModel):
    """`environments/<env>/release.yaml`: the pinned graphs (written by `graphops promote`)."""

    graphs: Annotated[
        dict[str, ReleaseEntry], Field(description="Graph name -> its release in this environment.")
    ] = {}
