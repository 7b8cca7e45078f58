"""Pin and re-render: one graph's entry of ``release.yaml`` written, then the environment rendered.

The one way the controller changes what an environment pins: a promotion (a new lock), an
experiment (arms or a shadow added, or concluded) and a rollout's abort (the stable version's
entry back) all call `pin` inside their commit, so ``serve.yaml`` and ``rayservice.yaml`` always
match the release they are committed with (`render` refuses an invalid release first).
"""

from __future__ import annotations

from pathlib import Path

from graphops.controller.render import render
from graphops.environments import ReleaseEntry, load_release, write_release


def pin(repo: Path, env: str, graph: str, entry: ReleaseEntry) -> list[Path]:
    """Write ``entry`` as ``graph``'s in ``env``'s ``release.yaml``, then render ``env``.

    Args:
        repo: Repository root.
        env: Environment name.
        graph: Graph name.
        entry: Its release entry (a new lock, the same lock with an experiment, or an older
            entry taken back from git history).

    Returns:
        The rendered files that changed.

    Raises:
        ConfigError: The release does not render (e.g. an invalid experiment): nothing is
            committed (callers pin inside `graphops.controller.commit.commit_change`).
    """
    release = load_release(repo, env)
    graphs = dict(release.graphs) | {graph: entry}
    write_release(repo, env, release.model_copy(update={"graphs": graphs}))
    return render(repo, env).write()


__all__ = ["pin"]
