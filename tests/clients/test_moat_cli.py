"""The identity subcommands as a user runs them: `moat token`, `moat keys rotate`, and what
`moat serve-identity` does with a bad account or a SIGTERM. Tokens are checked with real
google-auth against the running server's certificates."""

from __future__ import annotations

import google.auth.jwt
import google.auth.transport.requests
import google.oauth2.id_token
import requests

from conftest import AUD, SA, flat, moat, serve


def test_token_prints_only_a_verifiable_token(server, state_dir):
    out = moat("token", "examples/shop", "--as", f"serviceAccount:{SA}", "--audience", AUD, "--state", str(state_dir))
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("\n") and out.stdout.count("\n") == 1
    token = out.stdout.strip()
    request = google.auth.transport.requests.Request()
    # Same state directory as the running server, so its certificates verify the token.
    claims = google.oauth2.id_token.verify_token(token, request, audience=AUD, certs_url=server.jwks_url)
    assert (claims["iss"], claims["email"], claims["email_verified"]) == ("https://accounts.google.com", SA, True)


def test_token_for_a_user(server, state_dir):
    out = moat("token", "examples/shop", "--as", "user:alice@example.com", "--audience", AUD, "--state", str(state_dir))
    assert out.returncode == 0, out.stderr
    request = google.auth.transport.requests.Request()
    claims = google.oauth2.id_token.verify_token(out.stdout.strip(), request, audience=AUD, certs_url=server.x509_url)
    assert claims["email"] == "alice@example.com"


def test_token_refuses_a_service_account_the_project_does_not_know(tmp_path):
    out = moat(
        "token", "examples/shop", "--as", "serviceAccount:nobody@evil.iam.gserviceaccount.com",
        "--audience", AUD, "--state", str(tmp_path),
    )
    assert out.returncode == 2
    assert out.stdout == ""
    assert "project `shop-prod` has no service account `nobody@evil.iam.gserviceaccount.com`" in flat(out.stderr)
    assert not (tmp_path / "keys").exists(), "no key is written for a refused request"


def test_the_default_compute_service_account_is_known(tmp_path):
    out = moat(
        "token", "examples/shop", "--as", "serviceAccount:123456789012-compute@developer.gserviceaccount.com",
        "--audience", AUD, "--state", str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert google.auth.jwt.decode(out.stdout.strip(), verify=False)["email"] == (
        "123456789012-compute@developer.gserviceaccount.com"
    )


def test_keys_rotate_prepublishes_the_next_key_and_keeps_signing_with_the_current_one(tmp_path):
    def token_kid() -> str:
        out = moat("token", "examples/shop", "--as", f"serviceAccount:{SA}", "--audience", AUD, "--state", str(tmp_path))
        assert out.returncode == 0, out.stderr
        return google.auth.jwt.decode_header(out.stdout.strip())["kid"]

    before = token_kid()
    out = moat("keys", "rotate", "examples/shop", "--state", str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    current = lines["signing key"].split(" ")[0]
    new = lines["next signing key"].split(" ")[0]
    published = lines["published keys"].split(", ")
    assert current == before and new != before
    assert new in published and before in published
    # Published first, signing two minutes later: a running moat has the key before any token.
    assert token_kid() == before


def test_serve_identity_refuses_an_unknown_account(tmp_path):
    out = moat(
        "serve-identity", "examples/shop", "--as", "serviceAccount:nobody@evil.iam.gserviceaccount.com",
        "--state", str(tmp_path),
    )
    assert out.returncode == 2
    assert out.stdout == ""
    assert "has no service account" in flat(out.stderr)


def test_serve_identity_refuses_a_user(tmp_path):
    out = moat("serve-identity", "examples/shop", "--as", "user:alice@example.com", "--state", str(tmp_path))
    assert out.returncode == 2
    assert "a metadata server serves a service account" in flat(out.stderr)


def test_serve_identity_refuses_a_non_loopback_listener(tmp_path):
    out = moat(
        "serve-identity", "examples/shop", "--as", f"serviceAccount:{SA}", "--listen", "0.0.0.0:0",
        "--state", str(tmp_path),
    )
    assert out.returncode == 2
    assert "is not a loopback address" in flat(out.stderr)


def test_serve_identity_prints_its_environment_and_stops_cleanly_on_sigterm(tmp_path):
    served = serve(tmp_path / "state", account="web@shop-prod.iam.gserviceaccount.com")
    try:
        host = served.env["GCE_METADATA_HOST"]
        assert host.startswith("127.0.0.1:")
        assert served.env["GCE_METADATA_IP"] == host and served.env["GCE_METADATA_ROOT"] == host
        assert served.jwks_url.endswith("/oauth2/v3/certs") and served.x509_url.endswith("/oauth2/v1/certs")
        r = requests.get(
            f"http://{host}/computeMetadata/v1/instance/service-accounts/default/email",
            headers={"Metadata-Flavor": "Google"},
            timeout=5,
        )
        assert (r.status_code, r.text) == (200, "web@shop-prod.iam.gserviceaccount.com")
        assert (tmp_path / "state" / "keys").is_dir()
    finally:
        status = served.stop()
    assert status == 0, served.stderr.read_text()
