"""Runtimes: the local reference runner, the offline (`runtime.offline`) and online runtimes.

Their contract with the rest of graphops (app arguments, deployments, the carrier of a
pinned graph) is public in `graphops.runtime.schema`, how a route is split in
`graphops.runtime.split`, counters and their figures in `graphops.runtime.figures`; the
``_``-modules are private.
"""

from graphops.runtime._table import read_rows, to_columns, to_rows, write_rows
from graphops.runtime.runner import LocalRun, LocalRunner, RunStats, run_local

__all__ = [
    "LocalRun",
    "LocalRunner",
    "RunStats",
    "read_rows",
    "run_local",
    "to_columns",
    "to_rows",
    "write_rows",
]
