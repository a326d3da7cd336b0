"""A running Dagster webserver (``dagster dev`` or ``dagster-webserver``) as the tests see it:
GraphQL queries, its log, and waiting until its workspace has loaded."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

START_TIMEOUT_S = 300  # ~40 s idle; over 120 s on 2 CPUs shared with other test runs

LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = {"query": query, "variables": variables or {}}
        resp = requests.post(self.url, json=payload, timeout=30)
        resp.raise_for_status()
        body = resp.json()
        assert "errors" not in body, body
        return body["data"]

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_until_loaded(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, f"the webserver exited:\n{server.tail()}"
        try:
            entries = server.query(LOCATIONS)["workspaceOrError"]["locationEntries"]
        except (requests.RequestException, AssertionError, KeyError):
            time.sleep(1.0)
            continue
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, errors
            return
        time.sleep(1.0)
    raise TimeoutError(f"the webserver did not load the workspace:\n{server.tail()}")
