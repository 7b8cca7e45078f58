"""`graphops validate` on a real local Ray, a real MLflow store and real git repositories."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import git
import pytest
from typer.testing import CliRunner

from graphops.cli import app
from graphops.environments import GraphLock, Release, ReleaseEntry, write_release
from graphops.graph import load_graph
from graphops.registry import Registry, ResolvedModel
from graphops.validation import ValidationReport, markdown, validate_graph, validate_graphs
from graphops.validation.reuse import file_digest, passed_validation, reused_validation

pytestmark = pytest.mark.usefixtures("ray_cluster", "champion")


def repo_with(tmp_path: Path, repo_copy: Path, version: str, **replace: str) -> Path:
    """A copy of the repository whose digits graph has ``version`` and text replacements."""
    repo = tmp_path / "repo"
    shutil.copytree(repo_copy, repo)
    init = repo / "graphs" / "digits" / "__init__.py"
    text = init.read_text().replace('version="1.0.0"', f'version="{version}"')
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    init.write_text(text)
    return repo


def test_passing_validation_is_recorded_with_its_lock(
    tmp_path: Path, repo_copy: Path, registry: Registry, champion: ResolvedModel
) -> None:
    repo = repo_with(tmp_path, repo_copy, "1.0.0-pass")
    # A commit in the repository's history: only such a record is reused below.
    with git.Repo.init(repo, initial_branch="main") as g:
        g.git.add(A=True)
        commit = g.index.commit("digits 1.0.0-pass").hexsha
    result = validate_graph(repo, "digits", registry, commit=commit, parity=True)
    assert result.status == "passed", result.problems
    assert result.parity is not None and result.parity.passed
    assert result.parity.rows == 360 and result.parity.max_abs_diff <= 1e-5
    assert result.rows == 360
    [gate] = result.gates
    assert (gate.metric, gate.gate, gate.passed) == ("accuracy", ">= 0.95", True)
    assert 0.95 <= gate.value <= 1.0
    assert result.models == {"logits": champion.uri}
    run = registry.client.get_run(result.run_id)
    tags = run.data.tags
    assert tags["graphops.graph"] == "digits" and tags["graphops.version"] == "1.0.0-pass"
    assert tags["graphops.status"] == "passed" and tags["graphops.commit"] == commit
    assert tags["graphops.content_hash"] == result.content_hash
    assert tags["graphops.model.logits"] == champion.uri
    assert tags["graphops.model.logits.digest"] == champion.digest
    assert tags["graphops.dataset_digest"] == file_digest(repo / "graphs/digits/validation.parquet")
    assert run.data.metrics["accuracy"] == pytest.approx(gate.value)
    assert run.data.metrics["parity.mismatches"] == 0
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in registry.client.list_artifacts(result.run_id)}
    assert {"report.md", "report.json"} <= artifacts
    report = Path(registry.client.download_artifacts(result.run_id, "report.md", str(tmp_path)))
    assert f"MLflow run: `{result.run_id}`" in report.read_text()
    # Asked again with parity: this run checked it, so it is reused (and shows its parity).
    again = validate_graphs(repo, ["digits"], registry, reuse=True).graphs[0]
    assert again.reused and again.run_id == result.run_id
    assert again.parity is not None and again.parity.passed and again.parity.rows == 360


def test_failing_gate_is_named_and_recorded(
    tmp_path: Path, repo_copy: Path, registry: Registry
) -> None:
    repo = repo_with(tmp_path, repo_copy, "1.0.0-gate", **{"min=0.95": "min=0.999"})
    report = validate_graphs(repo, ["digits"], registry, parity=False)
    [result] = report.graphs
    assert result.status == "failed" and report.exit_code == 1
    assert result.problems == [f"accuracy = {result.gates[0].value:.4f} fails its gate >= 0.999."]
    run = registry.client.get_run(result.run_id)
    assert run.data.tags["graphops.status"] == "failed" and run.info.status == "FAILED"
    assert "**FAIL**" in markdown(report)


def test_broken_graph_beside_a_good_one(
    tmp_path: Path, repo_copy: Path, registry: Registry
) -> None:
    repo = repo_with(tmp_path, repo_copy, "1.0.0-broken")
    broken = repo / "graphs" / "broken"
    broken.mkdir()
    (broken / "__init__.py").write_text("import numpy\n\nraise RuntimeError('boom')\n")
    report = validate_graphs(repo, ["broken", "digits"], registry, parity=False)
    assert [g.status for g in report.graphs] == ["error", "passed"]
    assert report.exit_code == 2
    assert "graphs/broken/__init__.py:3" in report.graphs[0].problems[0]
    assert "RuntimeError: boom" in report.graphs[0].problems[0]
    text = markdown(report)
    assert "`broken`" in text and "`digits`" in text


def test_changed_files_without_a_version_bump_fail(
    tmp_path: Path, repo_copy: Path, registry: Registry
) -> None:
    repo = repo_with(tmp_path, repo_copy, "1.0.0-bump")
    assert validate_graph(repo, "digits", registry, parity=False).status == "passed"
    init = repo / "graphs" / "digits" / "__init__.py"
    init.write_text(init.read_text() + "\n# a change that must come with a new version\n")
    again = validate_graph(repo, "digits", registry, parity=False)
    assert again.status == "failed"
    assert "bump the version" in again.problems[0] and "1.0.0-bump" in again.problems[0]
    init.write_text(init.read_text().replace('version="1.0.0-bump"', 'version="1.0.1-bump"'))
    assert validate_graph(repo, "digits", registry, parity=False).status == "passed"


def test_a_passed_validation_of_the_same_lock_is_found_for_reuse(
    tmp_path: Path, repo_copy: Path, registry: Registry
) -> None:
    repo = repo_with(tmp_path, repo_copy, "1.0.0-reuse")
    package = load_graph(repo, "digits")
    assert passed_validation(registry, package) is None
    first = validate_graph(repo, "digits", registry, parity=False)
    assert first.status == "passed", first.problems
    record = passed_validation(registry, package)
    assert record is not None and record.run_id == first.run_id
    reused = reused_validation(package, record)
    assert (reused.status, reused.run_id, reused.digests) == ("passed", first.run_id, first.digests)
    assert [(g.metric, g.gate, g.passed) for g in reused.gates] == [
        (g.metric, g.gate, g.passed) for g in first.gates
    ]
    assert reused.gates[0].value == pytest.approx(first.gates[0].value)
    assert first.run_id in markdown(ValidationReport(graphs=[reused]))  # the demo's report
    other = repo_with(tmp_path / "other", repo_copy, "1.0.0-reuse2")  # another lock: not reused
    assert passed_validation(registry, load_graph(other, "digits")) is None


def test_validate_reuses_a_passed_validation_unless_forced(
    tmp_path: Path, repo_copy: Path, registry: Registry
) -> None:
    repo = repo_with(tmp_path, repo_copy, "1.0.0-cli-reuse")
    runner = CliRunner()
    args = ["--repo", str(repo), "--tracking-uri", registry.tracking_uri, "validate", "digits"]
    args += ["--no-parity", "--report-json", str(tmp_path / "report.json")]

    def runs() -> list[str]:
        return [r.run_id for r in registry.validations("digits", "1.0.0-cli-reuse")]

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    [run_id] = runs()
    assert "reused" not in first.output
    again = runner.invoke(app, args)  # the same version, files, model and data: not run again
    assert again.exit_code == 0, again.output
    assert runs() == [run_id]
    flat = " ".join(again.output.split())
    assert (
        "digits: a passed validation of this code, these models and this data exists "
        f"(MLflow run {run_id}); reused. --force validates again." in flat
    )
    assert "passed (reused)" in flat
    reused = json.loads((tmp_path / "report.json").read_text())["graphs"][0]
    assert (reused["status"], reused["run_id"], reused["reused"]) == ("passed", run_id, True)
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert len(runs()) == 2 and "reused" not in forced.output


def test_reuse_needs_parity_when_asked_and_the_trusted_job_its_own_record(
    tmp_path: Path, repo_copy: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = repo_with(tmp_path, repo_copy, "1.0.0-reuse-rules")
    package = load_graph(repo, "digits")
    first = validate_graph(repo, "digits", registry, commit="0" * 40, parity=False)
    assert first.status == "passed", first.problems
    record = passed_validation(registry, package)
    assert record is not None and record.run_id == first.run_id
    # A run that did not check parity is no evidence of it: `validate` (parity on) runs again.
    assert passed_validation(registry, package, parity=True) is None
    # The trusted job writes what promotion trusts: an untrusted run of a commit that is not in
    # the repository's history is not reused there.
    assert passed_validation(registry, package, trusted_in=repo) is None
    monkeypatch.setenv("GRAPHOPS_TRUSTED_RECORD", "1")
    report = validate_graphs(repo, ["digits"], registry, parity=False, reuse=True, record=False)
    assert not report.graphs[0].reused
    monkeypatch.delenv("GRAPHOPS_TRUSTED_RECORD")
    # Nor anywhere else: promotion trusts no record of a commit outside the history, so a run of
    # the same code on another branch is validated again (the demo re-run after HEAD moved).
    assert passed_validation(registry, package, history=repo) is None
    report = validate_graphs(repo, ["digits"], registry, parity=False, reuse=True)
    assert not report.graphs[0].reused and report.graphs[0].run_id != first.run_id
    again = validate_graphs(repo, ["digits"], registry, parity=False, reuse=True)
    assert again.graphs[0].reused and again.graphs[0].run_id == report.graphs[0].run_id
    assert report.graphs[0].parity is None  # shown as it was: parity not checked


def test_regression_against_the_pinned_baseline(
    tmp_path: Path, repo_copy: Path, registry: Registry
) -> None:
    repo = repo_with(tmp_path, repo_copy, "1.0.0-baseline")
    dataset = repo / "graphs" / "digits" / "validation.parquet"
    pinned = registry.record_validation(
        graph="digits",
        tags={
            "graphops.graph": "digits",
            "graphops.version": "0.9.0",
            "graphops.dataset_digest": file_digest(dataset),
        },
        params={},
        metrics={"accuracy": 0.999},
        status="passed",
        artifacts=lambda run_id: {},
    )
    prod = repo / "environments" / "prod"
    prod.mkdir(parents=True)
    (prod / "environment.yaml").write_text("policy: {require_validation: true}\n")
    lock = GraphLock(
        version="0.9.0",
        content_hash="sha256:" + "1" * 64,
        commit="0" * 40,
        validation_run=pinned,
        package="gcs://_ray_pkg_0123456789abcdef.zip",
        platform_version="0.1.0",
    )
    entry = ReleaseEntry(lock=lock, promoted_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    write_release(repo, "prod", Release(graphs={"digits": entry}))
    result = validate_graph(repo, "digits", registry, parity=False)
    assert result.status == "failed" and result.baseline_run == pinned
    [gate] = result.gates
    assert gate.gate_passed and gate.regressed and gate.baseline == pytest.approx(0.999)
    assert "regressed from the pinned 0.9990" in result.problems[0]


def test_cli_validates_only_changed_graphs(tmp_path: Path, repo_copy: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(repo_copy, repo)
    (repo / "README.md").write_text("docs\n")
    with git.Repo.init(repo, initial_branch="main") as g:
        with g.config_writer() as config:
            config.set_value("user", "name", "t").set_value("user", "email", "t@example.com")
        g.git.add(A=True)
        g.index.commit("initial")
        g.git.checkout("-b", "docs-only")
        (repo / "README.md").write_text("more docs\n")
        g.git.commit("-am", "docs")
    runner = CliRunner()
    fresh = tmp_path / "fresh"  # an empty MLflow store: --train-missing trains digits first
    fresh.mkdir()
    args = ["--repo", str(repo), "--tracking-uri", f"sqlite:///{fresh / 'mlflow.db'}", "validate"]
    args += ["--train-missing", "--changed", "--base", "main", "--no-parity"]
    nothing = runner.invoke(app, [*args, "--report-json", str(tmp_path / "none.json")])
    assert nothing.exit_code == 0, nothing.output
    assert json.loads((tmp_path / "none.json").read_text())["graphs"] == []

    init = repo / "graphs" / "digits" / "__init__.py"
    init.write_text(init.read_text().replace('version="1.0.0"', 'version="1.1.0-cli"'))
    md, js = tmp_path / "report.md", tmp_path / "report.json"
    result = runner.invoke(app, [*args, "--report-md", str(md), "--report-json", str(js)])
    assert result.exit_code == 0, result.output
    assert "Trained and registered models:/digits/1 for digits." in result.output
    data = json.loads(js.read_text())
    assert [g["graph"] for g in data["graphs"]] == ["digits"] and data["exit_code"] == 0
    assert data["graphs"][0]["status"] == "passed"
    assert (
        "Changed since `main`" in md.read_text()
        and "| `digits` | 1.1.0-cli | ✅ passed |" in md.read_text()
    )
