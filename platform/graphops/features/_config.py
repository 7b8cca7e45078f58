"""Which feature store an environment uses: the `features:` section of `environment.yaml`."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, model_validator

from graphops._models import FrozenModel


class RedisConfig(FrozenModel):
    """How to reach the Redis server holding the features."""

    url: Annotated[
        str,
        Field(description="Redis URL, e.g. redis://127.0.0.1:6379/0 (no password in git)."),
    ] = "redis://127.0.0.1:6379/0"
    url_env: Annotated[
        str | None,
        Field(
            description="Name of an environment variable holding the URL instead (for URLs "
            "with credentials); it wins over `url` when set."
        ),
    ] = None
    key_prefix: Annotated[
        str, Field(description="Prefix of every key, so several environments share a server.")
    ] = "graphops"

    def resolved_url(self) -> str:
        """``$url_env`` when set, else ``url``."""
        return (os.environ.get(self.url_env) if self.url_env else None) or self.url


class FeaturesConfig(FrozenModel):
    """The feature store of an environment; graph code never names one."""

    store: Annotated[
        Literal["embedded", "redis"],
        Field(
            description="embedded: in-process lookups from each table's Parquet source (local "
            "runs, CI, the demo); redis: a Redis server loaded by `graphops features load`."
        ),
    ] = "embedded"
    redis: Annotated[
        RedisConfig | None,
        Field(description="Where Redis is (required when store is redis)."),
    ] = None

    @model_validator(mode="after")
    def _redis_given(self) -> FeaturesConfig:
        if self.store == "redis" and self.redis is None:
            raise ValueError("store is redis but no `redis:` section says where it is (add url)")
        return self
