"""The live side of an environment: its Ray cluster, read and changed through Serve's REST API.

Requests carry the cluster's token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``: Ray's own order). Packages of graph code are uploaded with Ray's own
job-submission client, content-addressed, so the URI in ``serve.yaml`` is what runs (which
packages, and the check that they hash to their lock: `graphops.controller.packaging`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import requests

from graphops._verbosity import quiet
from graphops.environments import EnvironmentConfig
from graphops.errors import (
    ApplyError,
    ClusterUnreachableError,
    ConfigError,
    MissingTokenError,
    TokenRefusedError,
)

APPLICATIONS = "/api/serve/applications/"
NODES = "/api/v0/nodes"
"""Ray's state API: the cluster's nodes (resources, labels, state)."""


def auth_token(env_var: str | None = None) -> str | None:
    """The cluster token: ``$env_var``, else Ray's lookup (env, token file, ~/.ray/auth_token)."""
    if env_var:
        return os.environ.get(env_var, "").strip() or None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return path.read_text().strip() if path.is_file() else None


def token_variable(env: EnvironmentConfig) -> str:
    """The variable to export with the cluster's token: ``cluster.token_env``, else RAY_AUTH_TOKEN."""
    return env.cluster.token_env or "RAY_AUTH_TOKEN"


def _resolve(value: str | None, env_var: str | None, what: str, env: EnvironmentConfig) -> str:
    if value:
        return value.rstrip("/")
    if env_var and os.environ.get(env_var):
        return os.environ[env_var].rstrip("/")
    raise ConfigError(
        f'Environment "{env.name}" has no {what}'
        + (f" (${env_var} is not set)." if env_var else "."),
        fix=f"Set cluster.{what} in environments/{env.name}/environment.yaml"
        + (f" or export {env_var}." if env_var else "."),
    )


def dashboard_url(env: EnvironmentConfig) -> str:
    """The environment's Ray dashboard (Serve REST API) address."""
    return _resolve(env.cluster.dashboard, env.cluster.dashboard_env, "dashboard", env)


def serve_url(env: EnvironmentConfig) -> str:
    """The environment's Serve HTTP address."""
    c = env.cluster
    if c.serve_url or c.serve_url_env:
        return _resolve(c.serve_url, c.serve_url_env, "serve_url", env)
    host = dashboard_url(env).rsplit(":", 1)[0]
    return f"{host}:{env.http_port}"


class Cluster:
    """One environment's cluster: Serve applications (read, put) and code packages (upload)."""

    def __init__(self, env: EnvironmentConfig, timeout_s: float = 30.0) -> None:
        self.env = env
        self.url = dashboard_url(env)
        self.timeout_s = timeout_s
        token = auth_token(env.cluster.token_env)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            answer = requests.request(
                method, self.url + path, headers=self.headers, timeout=self.timeout_s, **kwargs
            )
        except requests.RequestException as exc:
            raise ClusterUnreachableError(
                f"The Ray dashboard of {self.env.name} at {self.url} is unreachable: {exc}",
                fix="Start the cluster (the demo's: `nox -s demo`; yours: `ray start --head`) "
                "or fix cluster.dashboard in "
                f"environments/{self.env.name}/environment.yaml.",
            ) from exc
        if answer.status_code in (401, 403):
            raise self._token_error(answer.status_code)
        if answer.status_code >= 400:
            raise ApplyError(
                f"{method} {path} on {self.env.name} answered {answer.status_code}: "
                f"{answer.text.strip()[:500]}",
                fix="Read the message; `graphops render --check` validates the config first.",
            )
        return answer

    def _token_error(self, code: int) -> ApplyError:
        """`MissingTokenError` when no token was sent, else `TokenRefusedError`."""
        variable = token_variable(self.env)
        where = f"The Ray dashboard of {self.env.name} at {self.url}"
        also = "" if self.env.cluster.token_env else " (or RAY_AUTH_TOKEN_PATH, a file)"
        local = "//127.0.0.1:" in self.url or "//localhost:" in self.url
        demo = (
            f" The demo's local cluster (in the repository root): export {variable}="
            f"$(cat .graphops/demo/ray-{self.env.name}.token)"
            if local
            else ""
        )
        if "Authorization" not in self.headers:
            return MissingTokenError(
                f"{where} asks for a token ({code}) and ${variable} is not set",
                fix=f"Export {variable}{also} with the cluster's token.{demo}",
            )
        return TokenRefusedError(
            f"{where} refused the token in ${variable} ({code})",
            fix=f"Export {variable}{also} with this cluster's current token (a restarted "
            f"cluster has a new one).{demo}",
        )

    def applications(self) -> dict[str, dict[str, Any]]:
        """Live applications by name (Serve's details: status, route, deployed config, ...)."""
        details = self._request("GET", APPLICATIONS).json()
        return dict(details.get("applications") or {})

    def nodes(self) -> list[dict[str, Any]]:
        """Ray's node records (state API): state, ``resources_total``, labels, ..."""
        answer = self._request("GET", NODES, params={"limit": 10000, "detail": "true"})
        try:
            rows: list[dict[str, Any]] = answer.json()["data"]["result"]["result"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ApplyError(
                f"GET {NODES} on {self.env.name} gave no node list ({exc!r}): {answer.text[:200]}",
                fix="Point cluster.dashboard at the Ray dashboard of the cluster (Ray 2.60).",
            ) from exc
        return rows

    def put(self, applications: list[dict[str, Any]], base: dict[str, Any]) -> None:
        """Deploy exactly ``applications`` (Serve replaces the whole set) with ``base`` options."""
        self._request("PUT", APPLICATIONS, json={**base, "applications": applications})

    def wait(self, names: list[str], timeout_s: float) -> dict[str, str]:
        """Wait until every app in ``names`` is RUNNING; name -> problem for those that are not."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                live = self.applications()
            except ClusterUnreachableError as exc:
                # A dashboard busy with many starting replicas (30 graphs on 2 cores) can miss
                # one answer's timeout: keep asking until the deadline. Refused is final.
                if not isinstance(exc.__cause__, requests.Timeout) or time.monotonic() > deadline:
                    raise
                time.sleep(2)
                continue
            problems = {}
            for name in names:
                app = live.get(name)
                status = app["status"] if app else "NOT_STARTED"
                if app is None:
                    problems[name] = "not started"
                elif status != "RUNNING":
                    problems[name] = _why(app)
                    if status == "DEPLOY_FAILED":
                        problems[name] = f"DEPLOY_FAILED: {_why(app)}"
            failed = {k: v for k, v in problems.items() if v.startswith("DEPLOY_FAILED")}
            if not problems or failed or time.monotonic() > deadline:
                return problems
            time.sleep(0.5)

    def upload(self, uri: str, folder: Path) -> None:
        """Upload ``folder`` as the package ``uri`` unless the cluster has it already."""
        from ray.dashboard.modules.dashboard_sdk import SubmissionClient

        # Their INFO lines ("Uploading package ...") are Ray's, not ours: quiet unless --verbose.
        quiet("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging")

        client = SubmissionClient(self.url, headers=dict(self.headers))
        if not client._package_exists(uri):  # Ray's own upload protocol (job submission SDK)
            client._upload_package(uri, str(folder), include_gitignore=False)


def _why(app: dict[str, Any]) -> str:
    """The most specific reason Serve gives for an application's state."""
    import re

    texts = [d.get("message") or "" for d in (app.get("deployments") or {}).values()]
    texts.append(app.get("message") or "")
    for text in texts:
        ours = re.findall(r"graphops\.errors\.\w+: (.+)", text)
        if ours:
            return str(ours[-1]).strip()[:400]
    for text in texts:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1][:400]
    return str(app.get("status", "unknown"))
