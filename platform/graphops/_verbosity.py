"""How much of Ray's own output graphops shows: its lines stay in Ray's log files by default.

``GRAPHOPS_VERBOSE=1`` (`graphops --verbose`, inherited by the demo's subprocesses) shows them.
"""

from __future__ import annotations

import logging
import os

VERBOSE_ENV = "GRAPHOPS_VERBOSE"
"""Set to 1 to see Ray's own log lines and Ray Data's progress bars (`graphops --verbose`)."""


def verbose() -> bool:
    """Whether Ray's own output is wanted (``$GRAPHOPS_VERBOSE`` is set to 1, true or yes)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


def console_level() -> int:
    """The lowest level of Ray's log lines shown on the console: INFO if `verbose`, else WARNING."""
    return logging.INFO if verbose() else logging.WARNING


def quiet(*loggers: str) -> None:
    """Show only warnings and errors of these loggers on the console, unless `verbose`."""
    for name in loggers:
        logging.getLogger(name).setLevel(console_level())
