"""Node's google-auth-library (10.9.1, pinned by tests/clients/node/package-lock.json) against
`moat serve-identity`: `getIdTokenClient(AUD)` and the project id, as a Cloud Run workload
gets them. gcp-metadata pings `/computeMetadata/v1/instance` rather than `/` (spec/clients.md
§1). Skipped, with the reason printed, when node/npm are missing or the install fails."""

from __future__ import annotations

import json
import shutil
import subprocess

import google.auth.jwt
import pytest

from conftest import AUD, PROJECT_ID, REPO, SA

SOURCE = REPO / "tests" / "clients" / "node"
# Installed outside the source tree, from the lock file.
PREFIX = REPO / "target" / "node-clients"


def skip(reason: str):
    print(f"SKIP: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node_client() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        skip("node and npm are not installed")
    PREFIX.mkdir(parents=True, exist_ok=True)
    lock = (SOURCE / "package-lock.json").read_text()
    installed = PREFIX / "node_modules" / ".package-lock.json"
    if not installed.exists() or (PREFIX / "package-lock.json").read_text() != lock:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(SOURCE / name, PREFIX / name)
        out = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PREFIX, capture_output=True, text=True, timeout=300,
        )
        if out.returncode != 0:
            skip(f"`npm ci` failed (no registry?): {out.stderr.strip()[-300:]}")
    shutil.copy(SOURCE / "idtoken.js", PREFIX / "idtoken.js")
    return [node, str(PREFIX / "idtoken.js")]


def test_node_get_id_token_client(node_client, server, client_env):
    out = subprocess.run([*node_client, AUD], env=client_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["project"] == PROJECT_ID
    scheme, _, token = result["authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = google.auth.jwt.decode(token, verify=False)
    assert (claims["iss"], claims["aud"], claims["email"]) == ("https://accounts.google.com", AUD, SA)
    assert claims["exp"] == claims["iat"] + 3600
