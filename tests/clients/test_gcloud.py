"""gcloud against `moat serve-identity`: `gcloud auth print-identity-token` on a "GCE" whose
metadata server is moat (spec/clients.md §6). gcloud reads only GCE_METADATA_ROOT for data
and GCE_METADATA_IP for the ping; it is in this machine image but not on every CI runner."""

from __future__ import annotations

import shutil
import subprocess

import google.auth.jwt
import google.auth.transport.requests
import google.oauth2.id_token
import pytest

from conftest import AUD, SA


@pytest.fixture()
def gcloud() -> str:
    path = shutil.which("gcloud")
    if path is None:
        reason = "gcloud is not installed (it comes with the machine image, not from a registry)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return path


def test_gcloud_print_identity_token(gcloud, server, client_env):
    env = dict(client_env)
    env.pop("GCE_METADATA_HOST")
    env.update(
        GCE_METADATA_ROOT=server.env["GCE_METADATA_ROOT"],
        GCE_METADATA_IP=server.env["GCE_METADATA_IP"],
        CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="true",
        CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="true",
        CLOUDSDK_CORE_DISABLE_PROMPTS="1",
    )
    out = subprocess.run(
        [gcloud, "auth", "print-identity-token", f"--audiences={AUD}"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    claims = google.auth.jwt.decode(token, verify=False)
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["aud"] == AUD
    assert claims["email"] == SA
    assert claims["email_verified"] is True
    assert claims["exp"] == claims["iat"] + 3600
    # And it is one of ours: it verifies against the server's published keys.
    request = google.auth.transport.requests.Request()
    google.oauth2.id_token.verify_token(token, request, audience=AUD, certs_url=server.jwks_url)
