"""Signed promotions: git's own SSH verification of the commits that change an environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import git
import pytest
import yaml

from graphops.controller.signatures import check_signatures
from graphops.errors import UnsignedCommitError


def keypair(root: Path, name: str) -> tuple[Path, str]:
    """An ed25519 key made by ssh-keygen in ``root``: its private key file and signer line."""
    key = root / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    return key, f"{name}@example.com {kind} {blob}"


class Repo:
    """A git repository of environments/ (base and dev), committed signed or not."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.r = git.Repo.init(root, initial_branch="main")
        with self.r.config_writer() as config:
            config.set_value("user", "name", "t").set_value("user", "email", "t@example.com")
        (root / "environments/base").mkdir(parents=True)
        (root / "environments/dev").mkdir(parents=True)
        (root / "graphs").mkdir()

    def policy(self, **policy: object) -> None:
        path = self.root / "environments/dev/environment.yaml"
        path.write_text(yaml.safe_dump({"policy": policy}))

    def change(self, name: str, text: str) -> None:
        (self.root / name).write_text(text)

    def commit(self, message: str, key: Path | None = None) -> str:
        self.r.git.add(A=True)
        if key is None:
            self.r.git.commit("-m", message)
        else:
            self.r.git(c=["gpg.format=ssh", f"user.signingkey={key}"]).commit("-S", "-m", message)
        return self.r.head.commit.hexsha


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    return {n: keypair(tmp_path, n) for n in ("alice", "mallory")}


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


def test_nothing_is_checked_where_no_state_requires_it(repo: Repo) -> None:
    repo.policy(soak_minutes=0)
    repo.commit("dev")
    repo.change("environments/dev/release.yaml", "graphs: {}\n")
    repo.commit("unsigned")
    assert check_signatures(repo.root, "dev") == 0


def test_an_unsigned_change_is_refused_and_a_signed_one_accepted(
    repo: Repo, keys: dict[str, tuple[Path, str]]
) -> None:
    alice, alice_line = keys["alice"]
    repo.policy(require_signed_commits=True, allowed_signers=[alice_line])
    repo.commit("dev requires signed commits", alice)
    repo.change("environments/dev/release.yaml", "graphs: {}\n")
    sha = repo.commit("promote by hand")
    with pytest.raises(UnsignedCommitError) as caught:
        check_signatures(repo.root, "dev")
    message = str(caught.value)
    assert f'Got commit "{sha[:12]}" ("promote by hand", by t)' in message
    assert "Environment dev requires signed commits" in message
    assert "it has no signature" in message
    assert "git -c gpg.format=ssh -c user.signingkey=<key> commit -S" in message

    repo.r.git.reset("--hard", "HEAD~1")
    repo.change("environments/dev/release.yaml", "graphs: {}\n")
    repo.commit("promote, signed", alice)
    repo.change("graphs/x.py", "x = 1\n")
    repo.commit("graph code needs no environment signer")
    assert check_signatures(repo.root, "dev") == 2


def test_a_key_not_allowed_is_refused_by_git(repo: Repo, keys: dict[str, tuple[Path, str]]) -> None:
    (alice, alice_line), (mallory, _) = keys["alice"], keys["mallory"]
    repo.policy(require_signed_commits=True, allowed_signers=[alice_line])
    repo.commit("on", alice)
    repo.change("environments/dev/release.yaml", "graphs: {}\n")
    repo.commit("signed by another key", mallory)
    with pytest.raises(UnsignedCommitError, match="git verify-commit refused it"):
        check_signatures(repo.root, "dev")


def test_no_commit_turns_the_rule_off_or_adds_its_own_key_unsigned(
    repo: Repo, keys: dict[str, tuple[Path, str]]
) -> None:
    (alice, alice_line), (mallory, mallory_line) = keys["alice"], keys["mallory"]
    repo.policy(require_signed_commits=True, allowed_signers=[alice_line])
    on = repo.commit("on", alice)
    repo.policy(soak_minutes=0)  # off: judged by the signers allowed before it
    off = repo.commit("turn it off")
    repo.change("environments/dev/release.yaml", "graphs: {}\n")
    repo.commit("then promote unsigned")  # a chain of unsigned commits launders nothing
    with pytest.raises(UnsignedCommitError, match=f'"{off[:12]}"'):
        check_signatures(repo.root, "dev")

    repo.r.git.reset("--hard", on)
    repo.policy(require_signed_commits=True, allowed_signers=[mallory_line])
    swapped = repo.commit("swap in my own key, signed by it", mallory)
    with pytest.raises(UnsignedCommitError, match=f'"{swapped[:12]}".*signers allowed before'):
        check_signatures(repo.root, "dev")

    repo.r.git.reset("--hard", on)
    repo.policy(require_signed_commits=True, allowed_signers=[alice_line, mallory_line])
    repo.commit("alice adds mallory", alice)
    repo.change("environments/dev/release.yaml", "graphs: {}\n")
    repo.commit("mallory promotes", mallory)
    assert check_signatures(repo.root, "dev") == 3


def test_the_commit_that_turns_it_on_must_be_signed_by_a_listed_key(
    repo: Repo, keys: dict[str, tuple[Path, str]]
) -> None:
    (_, alice_line), (mallory, _) = keys["alice"], keys["mallory"]
    repo.policy(require_signed_commits=True, allowed_signers=[alice_line])
    repo.commit("on, signed by a key it does not list", mallory)
    with pytest.raises(UnsignedCommitError, match="the signers it lists itself"):
        check_signatures(repo.root, "dev")


def test_a_base_change_counts_for_every_environment(
    repo: Repo, keys: dict[str, tuple[Path, str]]
) -> None:
    alice, alice_line = keys["alice"]
    repo.policy(require_signed_commits=True, allowed_signers=[alice_line])
    repo.commit("on", alice)
    repo.change("environments/base/environment.yaml", "http_port: 8001\n")
    repo.commit("base, unsigned")
    with pytest.raises(UnsignedCommitError, match="base, unsigned"):
        check_signatures(repo.root, "dev")
