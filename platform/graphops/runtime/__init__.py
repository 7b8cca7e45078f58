"""Runtimes: the local reference runner and the offline Ray Data runtime (`runtime.offline`)."""

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
