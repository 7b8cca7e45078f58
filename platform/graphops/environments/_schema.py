"""The schema of `environment.yaml`: cluster, code source, models, policy, features, rollout."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from graphops._models import FrozenModel
from graphops.environments._cluster import ClusterConfig
from graphops.environments.rollout import RolloutConfig
from graphops.features import FeaturesConfig
from graphops.runtime.serving import ServingConfig

SSH_KEY_TYPE = re.compile(r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-\S+@openssh\.com)$")
"""An OpenSSH public key type, as in a .pub file or an allowed_signers line."""
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
    pickle_allowed: Annotated[
        tuple[str, ...],
        Field(
            description="Registered model names allowed to load by unpickling (an MLflow flavor "
            "such as sklearn with cloudpickle, pytorch or a python_function model): unpickling "
            "runs whatever code the file holds, so every other pickled model is refused. A "
            "platform team's grant, per model; validate reports each model loaded that way."
        ),
    ] = ()


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
    serving: Annotated[
        ServingConfig,
        Field(
            description="How requests reach the graphs' ingress replicas (Serve's proxy, direct "
            "ingress or HAProxy) and cross between replicas; a property of the cluster, read "
            "by Ray's processes when they start (the RayService containers' env, the local "
            "cluster's `ray start`); see docs/environments.md and docs/online.md."
        ),
    ] = ServingConfig()
