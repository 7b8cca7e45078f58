"""The cluster image's digest, pinned in ``environments/base/environment.yaml`` by CI's image job.

The image workflow (``.github/workflows/image.yml``) builds the ``Containerfile`` on merge, pushes
it and calls `pin_image` with the pushed digest; the change (the digest line and every re-rendered
``rayservice.yaml``) goes out as a promotion pull request like any other.
"""

from __future__ import annotations

import re
from pathlib import Path

from graphops.controller.render import render_all
from graphops.environments import ENVIRONMENTS_DIR, set_scalar
from graphops.errors import ConfigError

DIGEST_KEY = ("cluster", "image", "digest")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def pin_image(repo: Path, digest: str) -> list[Path]:
    """Write ``digest`` as ``cluster.image.digest`` of base and re-render every environment.

    Returns:
        The files changed (base's environment.yaml first).

    Raises:
        ConfigError: ``digest`` is not ``sha256:<64 hex>``, or base has no digest line.
    """
    if not DIGEST.fullmatch(digest):
        raise ConfigError(
            f"Got {digest!r} for the image digest: it must be sha256: followed by 64 lowercase "
            "hex digits.",
            fix="Pass the digest the registry returned for the pushed image.",
        )
    base = repo / ENVIRONMENTS_DIR / "base" / "environment.yaml"
    before = base.read_text()
    set_scalar(base, DIGEST_KEY, digest)
    written = [base] if base.read_text() != before else []
    for rendered in render_all(repo):
        written += rendered.write()
    return written
