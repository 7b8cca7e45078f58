"""Environment files: plain YAML only, a size cap, and located errors at any depth (issue 14)."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest

from graphops.environments import (
    Release,
    ReleaseEntry,
    load_environment,
    load_release,
    write_release,
)
from graphops.environments._yaml import MAX_YAML_BYTES, MAX_YAML_DEPTH
from graphops.errors import ConfigError
from tests.fixtures.locks import lock

REPO = Path(__file__).resolve().parents[2]

# Nine levels of nine aliases each: 9**9 (387 million) leaves once expanded.
LAUGHS = 'lol0: &l0 "lol"\n' + "".join(
    f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
)


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in text.splitlines())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    entry = ReleaseEntry(
        lock=lock(), promoted_at=datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
    )
    write_release(tmp_path, "dev", Release(graphs={"digits": entry}))
    return tmp_path


def _release(repo: Path) -> Path:
    return repo / "environments/dev/release.yaml"


def _environment(repo: Path) -> Path:
    return repo / "environments/dev/environment.yaml"


def test_bomb_under_a_release_deployments_is_refused_at_its_first_anchor(repo: Path) -> None:
    path = _release(repo)
    text = path.read_text().replace(
        "    deployments: {}\n", "    deployments:\n" + _indent(LAUGHS, 6), 1
    )
    path.write_text(text)
    line = text.splitlines().index('      lol0: &l0 "lol"') + 1

    with pytest.raises(ConfigError, match=r"An anchor \(&l0\) is not allowed") as caught:
        load_release(repo, "dev")
    assert (caught.value.file, caught.value.line) == (str(path), line)


def test_bomb_under_an_unknown_key_of_environment_yaml_is_refused(repo: Path) -> None:
    path = _environment(repo)
    path.write_text(path.read_text() + "laughs:\n" + _indent(LAUGHS, 2))

    with pytest.raises(ConfigError, match="environment files are plain YAML") as caught:
        load_environment(repo, "dev")
    assert caught.value.file == str(path)


def test_bomb_at_the_top_level_is_refused(repo: Path) -> None:
    _release(repo).write_text(LAUGHS)

    with pytest.raises(ConfigError, match=r"release.yaml:1: An anchor \(&l0\)"):
        load_release(repo, "dev")


def test_alias_is_refused_with_its_line(repo: Path) -> None:
    path = _environment(repo)
    # The anchor is on a key, the alias on a value: both are refused; the alias names its line.
    path.write_text("http_port: 8000\ncluster:\n  serve_url: *nowhere\n")

    with pytest.raises(ConfigError, match=r"An alias \(\*nowhere\) is not allowed") as caught:
        load_environment(repo, "dev")
    assert (caught.value.file, caught.value.line) == (str(path), 3)


def test_merge_keys_and_custom_tags_are_refused(repo: Path) -> None:
    path = _environment(repo)
    path.write_text("policy:\n  <<: {soak_minutes: 3}\n")
    with pytest.raises(ConfigError, match=r"environment.yaml:2: A merge key \(<<\)"):
        load_environment(repo, "dev")

    path.write_text("policy:\n  soak_minutes: !!python/object:os.system 3\n")
    with pytest.raises(ConfigError, match=r'The tag "tag:yaml.org,2002:python/object:os.system"'):
        load_environment(repo, "dev")

    path.write_text("policy:\n  upstream: !secret staging\n")
    with pytest.raises(ConfigError, match=r'environment.yaml:2: The tag "!secret"'):
        load_environment(repo, "dev")


def test_standard_explicit_tags_still_read(repo: Path) -> None:
    _environment(repo).write_text("http_port: !!int 8001\npolicy:\n  upstream: !!null\n")

    assert load_environment(repo, "dev").http_port == 8001


def test_oversized_file_is_refused_before_parsing(repo: Path) -> None:
    path = _release(repo)
    with path.open("w") as f:  # valid YAML, just too much of it
        f.write("# padding\n" * (MAX_YAML_BYTES // 10 + 1))

    with pytest.raises(ConfigError, match=r"may hold at most 1,048,576 bytes") as caught:
        load_release(repo, "dev")
    assert caught.value.file == str(path)


def test_deep_nesting_is_refused(repo: Path) -> None:
    _environment(repo).write_text("x: " + "[" * (MAX_YAML_DEPTH + 10) + "]" * (MAX_YAML_DEPTH + 10))

    with pytest.raises(ConfigError, match=f"Nesting deeper than {MAX_YAML_DEPTH} levels"):
        load_environment(repo, "dev")


def test_duplicate_keys_are_still_refused(repo: Path) -> None:
    _environment(repo).write_text("policy:\n  soak_minutes: 1\n  soak_minutes: 2\n")

    with pytest.raises(ConfigError, match=r'Key "soak_minutes" appears twice \(lines 2 and 3\)'):
        load_environment(repo, "dev")


@pytest.mark.parametrize(
    ("replace", "by", "key_path", "suggestion"),
    [
        (
            "    deployments: {}\n",
            "    deployments:\n      model:\n        replikas: 2\n",
            "graphs.digits.deployments.model.replikas",
            'Did you mean "replicas"?',
        ),
        (
            "    traffic: null\n",
            "    traffic:\n      arms:\n        '2.0.0':\n          wieght: 3\n",
            'graphs.digits.traffic.arms."2.0.0".wieght',
            'Did you mean "weight"?',
        ),
        (
            "      models:\n",
            "      modles:\n",
            "graphs.digits.lock.modles",
            'Did you mean "models"?',
        ),
    ],
)
def test_release_typo_deep_down_names_file_line_key_path_and_fix(
    repo: Path, replace: str, by: str, key_path: str, suggestion: str
) -> None:
    path = _release(repo)
    text = path.read_text()
    assert replace in text
    text = text.replace(replace, by, 1)
    path.write_text(text)
    typo = key_path.rsplit(".", 1)[-1]
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.strip().startswith(typo + ":"))

    with pytest.raises(ConfigError) as caught:
        load_release(repo, "dev")

    error = caught.value
    assert (error.file, error.line) == (str(path), line)
    assert f"Unknown key {key_path}" in str(error)
    assert suggestion in str(error)
    assert f"Fix {key_path} in release.yaml" in str(error)


@pytest.mark.parametrize(
    ("text", "key_path", "line", "suggestion"),
    [
        ("cluster:\n  gpus: false\n  dashbord: http://x\n", "cluster.dashbord", 3, "dashboard"),
        ("policy:\n  soak_minutse: 3\n", "policy.soak_minutse", 2, "soak_minutes"),
        ("code:\n  working_dri: x\n", "code.working_dri", 2, "working_dir"),
    ],
)
def test_environment_typo_names_file_line_key_path_and_fix(
    repo: Path, text: str, key_path: str, line: int, suggestion: str
) -> None:
    path = _environment(repo)
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_environment(repo, "dev")

    assert (caught.value.file, caught.value.line) == (str(path), line)
    assert f"Unknown key {key_path}" in str(caught.value)
    assert f'Did you mean "{suggestion}"?' in str(caught.value)


def test_a_bad_value_inherited_from_base_names_the_base_file(repo: Path) -> None:
    base = repo / "environments/base/environment.yaml"
    base.write_text(base.read_text().replace("http_port: 8000", "http_port: lots"))

    with pytest.raises(ConfigError, match="Got 'lots' for http_port") as caught:
        load_environment(repo, "dev")
    assert caught.value.file == str(base)
    assert caught.value.line is not None


def test_a_lock_naming_any_other_code_package_is_refused(repo: Path) -> None:
    path = _release(repo)
    text = path.read_text()
    assert "package: gcs://_ray_pkg_0123456789abcdef.zip" in text
    path.write_text(text.replace("gcs://_ray_pkg_0123456789abcdef.zip", "https://evil.test/x.zip"))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "evil" in t)

    with pytest.raises(ConfigError) as caught:
        load_release(repo, "dev")

    assert (caught.value.file, caught.value.line) == (str(path), line)
    assert "graphs.digits.lock.package" in str(caught.value)
    assert "content-addressed gcs://_ray_pkg_<hex>.zip" in str(caught.value)


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("ftp://x/{commit}.zip", "must start with one of https://"),
        ("https://x/archive/main.zip", "{commit} exactly once"),
        ("https://x/{commit}/{branch}.zip", "no other placeholder"),
    ],
)
def test_code_uri_templates_are_allowed_only_in_declared_forms(
    repo: Path, template: str, says: str
) -> None:
    _environment(repo).write_text(f"code:\n  working_dir: {template}\n")

    with pytest.raises(ConfigError) as caught:
        load_environment(repo, "dev")

    assert "code.working_dir" in str(caught.value) and says in str(caught.value)


def test_a_declared_template_is_accepted(repo: Path) -> None:
    _environment(repo).write_text("code:\n  working_dir: https://x.test/a/{commit}.zip\n")

    assert load_environment(repo, "dev").code.working_dir == "https://x.test/a/{commit}.zip"
