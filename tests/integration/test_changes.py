"""Changed-graph detection against real git repositories made in a temp dir."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from graphops.errors import ChangeDetectionError
from graphops.validation import changed_graphs, current_commit, is_dirty

FILES = {
    "graphs/__init__.py": "",
    "graphs/a/__init__.py": "A = 1\n",
    "graphs/b/__init__.py": "B = 1\n",
    "platform/graphops/x.py": "X = 1\n",
    "docs/x.md": "# x\n",
    ".gitignore": "*.log\n",
}


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's global git config (signing, hooks, templates) out of the test repos."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def init(path: Path, files: dict[str, str], branch: str = "main") -> git.Repo:
    r = git.Repo.init(path, initial_branch=branch)
    with r.config_writer() as cfg:
        cfg.set_value("user", "name", "Test")
        cfg.set_value("user", "email", "test@example.com")
    write(path, files)
    commit(r, "initial")
    return r


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def commit(r: git.Repo, message: str) -> git.Commit:
    r.git.add(all=True)
    return r.index.commit(message)


def branch(r: git.Repo, name: str = "feature") -> None:
    r.create_head(name).checkout()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with graphs a and b, a platform file and docs committed on main, on a branch."""
    path = tmp_path / "repo"
    with init(path, FILES) as r:
        branch(r)
    return path


def change(path: Path, files: dict[str, str], message: str = "change") -> None:
    with git.Repo(path) as r:
        write(path, files)
        commit(r, message)


def main_sha(path: Path) -> str:
    with git.Repo(path) as r:
        return r.heads.main.commit.hexsha


def test_a_graph_change_selects_only_that_graph(repo: Path) -> None:
    change(repo, {"graphs/a/__init__.py": "A = 2\n", "graphs/a/extra.py": ""})
    cs = changed_graphs(repo)
    assert cs.base == "main" and cs.merge_base == main_sha(repo)
    assert cs.head == current_commit(repo) != cs.merge_base
    assert cs.graphs == ("a",) and not cs.everything
    assert cs.files == ("graphs/a/__init__.py", "graphs/a/extra.py")
    assert cs.reasons == {"a": ("graphs/a/__init__.py", "graphs/a/extra.py")}


def test_docs_change_selects_nothing(repo: Path) -> None:
    change(repo, {"docs/x.md": "# y\n", "README.md": "hi\n", "tests/test_x.py": ""})
    cs = changed_graphs(repo)
    assert cs.files == ("README.md", "docs/x.md", "tests/test_x.py")
    assert cs.graphs == () and not cs.everything and cs.reasons == {}


def test_no_change_selects_nothing(repo: Path) -> None:
    cs = changed_graphs(repo)
    assert cs.merge_base == cs.head and cs.files == () and cs.graphs == ()


def test_platform_change_selects_every_graph(repo: Path) -> None:
    change(repo, {"platform/graphops/x.py": "X = 2\n", "graphs/a/__init__.py": "A = 2\n"})
    cs = changed_graphs(repo)
    assert cs.everything and cs.graphs == ("a", "b")
    assert cs.reasons == {
        "a": ("graphs/a/__init__.py", "platform/graphops/x.py"),
        "b": ("platform/graphops/x.py",),
    }


@pytest.mark.parametrize("name", ["constraints.txt", "pyproject.toml", "graphs/__init__.py"])
def test_platform_files_select_every_graph(repo: Path, name: str) -> None:
    change(repo, {name: "# changed\n"})
    cs = changed_graphs(repo)
    assert cs.everything and cs.graphs == ("a", "b") and cs.files == (name,)


def test_uncommitted_edit_counts_only_with_worktree(repo: Path) -> None:
    write(repo, {"graphs/b/__init__.py": "B = 2\n"})
    assert changed_graphs(repo, include_worktree=False).graphs == ()
    cs = changed_graphs(repo)
    assert cs.graphs == ("b",) and cs.files == ("graphs/b/__init__.py",)


def test_staged_edit_counts(repo: Path) -> None:
    write(repo, {"graphs/a/__init__.py": "A = 2\n"})
    with git.Repo(repo) as r:
        r.index.add(["graphs/a/__init__.py"])
        r.index.write()
    assert changed_graphs(repo).graphs == ("a",)
    assert changed_graphs(repo, include_worktree=False).graphs == ()


def test_untracked_file_counts_but_ignored_file_does_not(repo: Path) -> None:
    write(repo, {"graphs/b/new/data.csv": "x\n1\n", "graphs/a/run.log": "noise\n"})
    cs = changed_graphs(repo)
    assert cs.graphs == ("b",) and cs.files == ("graphs/b/new/data.csv",)


def test_new_graph_package_is_selected(repo: Path) -> None:
    change(repo, {"graphs/c/__init__.py": "C = 1\n"})
    cs = changed_graphs(repo)
    assert cs.graphs == ("c",) and cs.reasons == {"c": ("graphs/c/__init__.py",)}


def test_folder_without_init_is_not_a_graph(repo: Path) -> None:
    change(repo, {"graphs/notes/readme.md": "", "graphs/helpers.py": ""})
    assert changed_graphs(repo).graphs == ()


def test_deleted_graph_is_listed_but_not_selected(repo: Path) -> None:
    with git.Repo(repo) as r:
        r.index.remove(["graphs/b/__init__.py"], working_tree=True)
        r.index.commit("delete b")
    cs = changed_graphs(repo)
    assert cs.graphs == () and cs.files == ("graphs/b/__init__.py",)


def test_rename_counts_old_and_new_path(repo: Path) -> None:
    with git.Repo(repo) as r:
        r.index.move(["graphs/a/__init__.py", "graphs/b/moved.py"])
        r.index.commit("move")
    cs = changed_graphs(repo)
    assert cs.files == ("graphs/a/__init__.py", "graphs/b/moved.py")
    assert cs.graphs == ("b",)  # graphs/a has no __init__.py any more


def test_commits_on_base_after_the_branch_point_select_nothing(repo: Path) -> None:
    branch_point = main_sha(repo)
    change(repo, {"graphs/a/__init__.py": "A = 2\n"})
    with git.Repo(repo) as r:
        r.heads.main.checkout()
        write(repo, {"graphs/b/__init__.py": "B = 3\n"})
        commit(r, "main moves on")
        r.heads.feature.checkout()
    cs = changed_graphs(repo, base="main")
    assert cs.merge_base == branch_point != main_sha(repo)
    assert cs.graphs == ("a",) and cs.files == ("graphs/a/__init__.py",)


def test_default_base_prefers_origin_main(repo: Path, tmp_path: Path) -> None:
    change(repo, {"graphs/a/__init__.py": "A = 2\n"})
    with git.Repo.clone_from(repo, tmp_path / "clone", branch="feature") as clone:
        assert "origin/main" in [ref.name for ref in clone.refs]
    cs = changed_graphs(tmp_path / "clone")
    assert cs.base == "origin/main" and cs.graphs == ("a",)


def test_default_base_falls_back_to_master(tmp_path: Path) -> None:
    with init(tmp_path / "r", FILES, branch="master") as r:
        branch(r)
    change(tmp_path / "r", {"graphs/b/__init__.py": "B = 2\n"})
    cs = changed_graphs(tmp_path / "r")
    assert cs.base == "master" and cs.graphs == ("b",)


def test_no_default_base(tmp_path: Path) -> None:
    init(tmp_path / "r", FILES, branch="trunk").close()
    with pytest.raises(ChangeDetectionError, match=r"No default base branch.*--base.*trunk"):
        changed_graphs(tmp_path / "r")


def test_unknown_base_suggests_the_closest_branch(repo: Path) -> None:
    with pytest.raises(ChangeDetectionError, match=r'Unknown base ref "mian".*Did you mean "main"'):
        changed_graphs(repo, base="mian")


def test_unknown_remote_base_suggests_fetching_it(repo: Path) -> None:
    with pytest.raises(ChangeDetectionError) as info:
        changed_graphs(repo, base="origin/main")
    assert "Branches: feature, main." in str(info.value)
    assert "`git fetch origin main`" in info.value.fix


def test_shallow_clone_without_base_suggests_full_history(repo: Path, tmp_path: Path) -> None:
    change(repo, {"graphs/a/__init__.py": "A = 2\n"})
    url = (repo / ".git").as_uri()  # depth is ignored for plain local paths
    git.Repo.clone_from(url, tmp_path / "shallow", depth=1, branch="feature").close()
    with pytest.raises(ChangeDetectionError, match="shallow clone") as info:
        changed_graphs(tmp_path / "shallow", base="origin/main")
    assert "fetch-depth: 0" in info.value.fix


def test_unrelated_histories_have_no_merge_base(repo: Path) -> None:
    with git.Repo(repo) as r:
        r.git.checkout("--orphan", "unrelated")
        write(repo, {"other.txt": "x\n"})
        commit(r, "unrelated root")
    with pytest.raises(ChangeDetectionError, match=r"no merge base.*unrelated") as info:
        changed_graphs(repo, base="main")
    assert "--base" in info.value.fix


def test_not_a_git_repository(tmp_path: Path) -> None:
    (tmp_path / "graphs").mkdir()
    with pytest.raises(ChangeDetectionError, match="not a git repository") as info:
        changed_graphs(tmp_path)
    assert "repository clone" in info.value.fix
    with pytest.raises(ChangeDetectionError, match="not a git repository"):
        changed_graphs(tmp_path / "missing")


def test_current_commit(repo: Path, tmp_path: Path) -> None:
    with git.Repo(repo) as r:
        assert current_commit(repo) == r.head.commit.hexsha
    assert current_commit(tmp_path / "missing") is None
    (tmp_path / "plain").mkdir()
    assert current_commit(tmp_path / "plain") is None
    git.Repo.init(tmp_path / "empty", initial_branch="main").close()
    assert current_commit(tmp_path / "empty") is None


def test_is_dirty(repo: Path, tmp_path: Path) -> None:
    assert not is_dirty(repo)
    write(repo, {"graphs/a/__init__.py": "A = 2\n"})
    assert is_dirty(repo)
    assert is_dirty(repo, ["graphs/a"]) and is_dirty(repo, ["graphs/b", "graphs/a"])
    assert not is_dirty(repo, ["graphs/b"])
    write(repo, {"graphs/b/new.py": ""})
    assert is_dirty(repo, ["graphs/b"])
    (tmp_path / "plain").mkdir()
    assert is_dirty(tmp_path / "plain")


def test_ignored_file_is_not_dirty(repo: Path) -> None:
    write(repo, {"graphs/a/run.log": "noise\n"})
    assert not is_dirty(repo)


def test_files_at_reads_a_folder_or_a_file_as_of_a_commit(repo: Path) -> None:
    from graphops._git import files_at

    with git.Repo(repo) as r:
        first = r.head.commit.hexsha
        write(repo, {"graphs/a/__init__.py": "A = 2\n", "graphs/a/more.py": ""})
        commit(r, "change a")
    assert files_at(repo, first, "graphs/a") == {"graphs/a/__init__.py": b"A = 1\n"}
    assert files_at(repo, "HEAD", "graphs/a") == {
        "graphs/a/__init__.py": b"A = 2\n",
        "graphs/a/more.py": b"",
    }
    assert files_at(repo, first, "graphs/__init__.py") == {"graphs/__init__.py": b""}
    assert files_at(repo, first, "graphs/c") is None
