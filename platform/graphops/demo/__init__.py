"""The main job (`graphops demo`): local stand-ins for the environments' services and its steps.

`services` starts and stops local Ray clusters and the MLflow UI; `job`, `gitops` and
`experiment` are the steps `run` strings together. Sits between the CLI and the scaffold.
"""

from graphops.demo.job import STAGING_GRAPH
from graphops.demo.run import down, main_job

__all__ = ["STAGING_GRAPH", "down", "main_job"]
