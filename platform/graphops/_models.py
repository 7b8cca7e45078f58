"""The two pydantic bases every graphops schema derives from: unknown keys are errors.

``StrictModel`` for records built up step by step (validation results, local service state);
``FrozenModel`` for settings and pins, which are values (hashable, never changed in place).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid")


class FrozenModel(BaseModel):
    """A pydantic model that rejects unknown keys and cannot be changed once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)
