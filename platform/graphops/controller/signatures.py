"""Signed promotions: where an environment asks for it, only changes git verifies are applied.

With ``policy.require_signed_commits``, every commit on HEAD's first-parent history that changed
``environments/<env>/`` or ``environments/base/`` must carry an SSH signature that
``git verify-commit`` accepts against the signers allowed **before** that commit (the policy of
its first parent; for the commit that turns the requirement on, the signers it names itself).
So no commit can turn the requirement off, or add its own key, without the signature of a key
already allowed, and a chain of unsigned commits cannot launder one another. Commits that change
nothing there (graph code, other environments) need no signature: code reaches a cluster only
through a lock, and a lock is checked against its validation record
(`graphops.controller.verify`).

Git does the cryptography (``gpg.format=ssh``, ``gpg.ssh.allowedSignersFile`` pointing at a
temporary file built from ``policy.allowed_signers``); a GnuPG or X.509 signature is refused,
since git would check it against this machine's keyring, not the environment's signers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from graphops._git import head_commit, open_repo
from graphops.environments import ENVIRONMENTS_DIR, parse_yaml
from graphops.errors import GraphOpsError, UnsignedCommitError

SSH_SIGNATURE = "-----BEGIN SSH SIGNATURE-----"
_MAX_BYTES = 1024 * 1024  # as read_yaml: environment files are configuration, not data


@dataclass(frozen=True)
class Signing:
    """An environment's signing rule as of one commit."""

    required: bool
    signers: tuple[str, ...] = ()


def signing_at(commit: git.Commit | None, env: str) -> Signing:
    """The signing rule of ``env`` as committed in ``commit`` (base merged under the env).

    Only the two policy keys are read, leniently: a file an older commit cannot parse states
    no requirement (it was either written while none was required, or by an allowed signer).
    """
    if commit is None:
        return Signing(False)
    policy: dict[str, Any] = {}
    for folder in ("base", env):
        path = f"{ENVIRONMENTS_DIR}/{folder}/environment.yaml"
        try:
            blob = commit.tree / path
        except KeyError:
            continue
        if blob.size > _MAX_BYTES:
            continue
        try:
            data = parse_yaml(blob.data_stream.read(), f"{path}@{commit.hexsha[:12]}")
        except GraphOpsError:
            continue
        if isinstance(data.get("policy"), dict):
            policy |= data["policy"]
    signers = policy.get("allowed_signers")
    listed = tuple(str(s) for s in signers) if isinstance(signers, list) else ()
    return Signing(policy.get("require_signed_commits") is True, listed)


def verify_commit(r: git.Repo, commit: git.Commit, signers: tuple[str, ...]) -> str | None:
    """Why git cannot verify ``commit`` against ``signers``, or None when it can."""
    signature = (commit.gpgsig or "").lstrip()
    if not signature:
        return "it has no signature"
    if not signature.startswith(SSH_SIGNATURE):
        return (
            "it is signed with GnuPG or X.509, not SSH; only SSH signatures are checked "
            "against policy.allowed_signers"
        )
    if not signers:
        return "policy.allowed_signers lists no key"
    with tempfile.TemporaryDirectory(prefix="graphops-signers-") as tmp:
        allowed = Path(tmp) / "allowed_signers"
        allowed.write_text("\n".join(signers) + "\n")
        options = ["gpg.format=ssh", f"gpg.ssh.allowedSignersFile={allowed}"]
        try:
            r.git(c=options).verify_commit(commit.hexsha)
        except git.GitCommandError as exc:
            said = " ".join(str(exc.stderr or "").split()).strip(" '\"")
            return f"git verify-commit refused it ({said or f'exit {exc.status}'})"
    return None


def check_signatures(repo: Path, env: str) -> int:
    """Refuse ``env`` at HEAD unless each change of its files was signed where required.

    Args:
        repo: The checkout being applied (its HEAD is the environment's branch).
        env: Environment name.

    Returns:
        How many commits were verified (0 where no state of the environment requires it).

    Raises:
        UnsignedCommitError: Naming the commit, the environment, git's reason and the fix.
    """
    paths = [f"{ENVIRONMENTS_DIR}/{env}", f"{ENVIRONMENTS_DIR}/base"]
    verified = 0
    with open_repo(repo) as r:
        head = head_commit(r)
        if head is None:
            return 0
        for commit in r.iter_commits(head, paths=paths, first_parent=True):
            before = signing_at(commit.parents[0] if commit.parents else None, env)
            rule = before if before.required else signing_at(commit, env)
            if not rule.required:
                continue
            problem = verify_commit(r, commit, rule.signers)
            if problem is not None:
                raise _refusal(env, commit, problem, turned_on=not before.required)
            verified += 1
    return verified


def _refusal(env: str, commit: git.Commit, problem: str, turned_on: bool) -> UnsignedCommitError:
    subject = str(commit.summary)
    whose = "the signers it lists itself" if turned_on else "the signers allowed before it"
    return UnsignedCommitError(
        f'Got commit "{commit.hexsha[:12]}" ("{subject}", by {commit.author.name}) for a change '
        f"of environments/{env}/ or environments/base/. Environment {env} requires signed "
        f"commits (policy.require_signed_commits), and git cannot verify this one against "
        f"{whose}: {problem}.",
        fix="Have a key of policy.allowed_signers sign the change (git -c gpg.format=ssh "
        "-c user.signingkey=<key> commit -S), e.g. revert it and commit it again signed, then "
        f"apply again; never apply {env} from a branch that holds an unsigned change.",
    )
