"""Unmodified google-auth (2.62.2) against `moat serve-identity`: the calls a Cloud Run workload
makes (fetch_id_token, google.auth.default + refresh) and the verification an app makes
(verify_token with both certificate formats). spec/clients.md §1."""

from __future__ import annotations

import datetime
from unittest import mock

import google.auth._helpers
import google.auth.exceptions
import google.auth.jwt
import google.auth.transport.requests
import google.oauth2.id_token
import jwt as pyjwt
import pytest
import requests

from conftest import AUD, PROJECT_ID, SA, run_python


def unverified(token: str) -> tuple[dict, dict]:
    header = google.auth.jwt.decode_header(token)
    claims = google.auth.jwt.decode(token, verify=False)
    return header, claims


def assert_google_shaped(claims: dict, email: str, audience: str) -> None:
    """The claims spec/cloudrun.md §3.5 lists for a metadata-server ID token."""
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["aud"] == audience
    assert claims["email"] == email
    assert claims["email_verified"] is True
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert claims["exp"] == claims["iat"] + 3600
    assert isinstance(claims["sub"], str) and len(claims["sub"]) == 21 and claims["sub"].isdigit()


@pytest.fixture()
def id_token(client_env) -> str:
    """An ID token fetched the way a workload fetches one."""
    out = run_python(
        f"""
        import json
        import google.auth.transport.requests, google.oauth2.id_token
        request = google.auth.transport.requests.Request()
        print(json.dumps({{"token": google.oauth2.id_token.fetch_id_token(request, {AUD!r})}}))
        """,
        client_env,
    )
    return out["token"]


def test_fetch_id_token_returns_a_google_shaped_token_for_the_workload(id_token, server):
    header, claims = unverified(id_token)
    assert header["alg"] == "RS256"
    kids = [k["kid"] for k in requests.get(server.jwks_url, timeout=5).json()["keys"]]
    assert header["kid"] in kids
    assert_google_shaped(claims, SA, AUD)


def test_default_credentials_are_compute_engine_and_refresh(client_env):
    out = run_python(
        """
        import json
        import google.auth, google.auth.transport.requests
        credentials, project = google.auth.default()
        credentials.refresh(google.auth.transport.requests.Request())
        print(json.dumps({
            "type": f"{type(credentials).__module__}.{type(credentials).__name__}",
            "project": project,
            "token": credentials.token,
            "expiry": credentials.expiry.isoformat(),
            "email": credentials.service_account_email,
            "universe": credentials.universe_domain,
        }))
        """,
        client_env,
    )
    assert out["type"] == "google.auth.compute_engine.credentials.Credentials"
    assert out["project"] == PROJECT_ID
    assert out["token"].startswith("ya29.")
    assert out["email"] == SA
    assert out["universe"] == "googleapis.com"
    expiry = datetime.datetime.fromisoformat(out["expiry"])
    # google-auth stores a naive UTC expiry, refreshed a little early.
    left = expiry - datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert datetime.timedelta(minutes=50) < left <= datetime.timedelta(hours=1)


# verify_token takes the x509 map (checked by google.auth.jwt) or a JWKS (checked by PyJWT); the
# two paths raise different errors.
CERTS = [
    pytest.param("x509_url", google.auth.exceptions.InvalidValue, id="v1-x509"),
    pytest.param("jwks_url", pyjwt.exceptions.PyJWTError, id="v3-jwks"),
]


@pytest.mark.parametrize("certs,rejected", CERTS)
def test_verify_token_accepts_a_good_token(id_token, server, certs, rejected):
    request = google.auth.transport.requests.Request()
    claims = google.oauth2.id_token.verify_token(id_token, request, audience=AUD, certs_url=getattr(server, certs))
    # verify_token does not check the issuer (verify_oauth2_token would, against Google's URL).
    assert claims["iss"] == "https://accounts.google.com"
    assert_google_shaped(claims, SA, AUD)


@pytest.mark.parametrize("certs,rejected", CERTS)
def test_verify_token_rejects_another_audience(id_token, server, certs, rejected):
    request = google.auth.transport.requests.Request()
    with pytest.raises(rejected, match="(?i)audience"):
        google.oauth2.id_token.verify_token(
            id_token, request, audience="https://other-xyz-uc.a.run.app", certs_url=getattr(server, certs)
        )


class _TwoHoursLater(datetime.datetime):
    """PyJWT's clock (`datetime.now`), two hours ahead."""

    @classmethod
    def now(cls, tz=None):
        return datetime.datetime.now(tz) + datetime.timedelta(hours=2)


@pytest.mark.parametrize("certs,rejected", CERTS)
def test_verify_token_rejects_an_expired_token(id_token, server, certs, rejected):
    request = google.auth.transport.requests.Request()
    later = google.auth._helpers.utcnow() + datetime.timedelta(hours=2)
    with (
        mock.patch("google.auth._helpers.utcnow", return_value=later),
        mock.patch("jwt.api_jwt.datetime", _TwoHoursLater),
        pytest.raises(rejected, match="(?i)expired"),
    ):
        google.oauth2.id_token.verify_token(id_token, request, audience=AUD, certs_url=getattr(server, certs))


def test_a_token_from_other_keys_is_rejected(server, tmp_path):
    """Keys are per state directory: another directory's token has an unknown `kid`."""
    from conftest import moat

    out = moat("token", "examples/shop", "--as", f"serviceAccount:{SA}", "--audience", AUD, "--state", str(tmp_path))
    assert out.returncode == 0, out.stderr
    request = google.auth.transport.requests.Request()
    with pytest.raises(Exception, match="(?i)(signature|key|certificate)"):
        google.oauth2.id_token.verify_token(out.stdout.strip(), request, audience=AUD, certs_url=server.x509_url)
    with pytest.raises(pyjwt.exceptions.PyJWKClientError):
        google.oauth2.id_token.verify_token(out.stdout.strip(), request, audience=AUD, certs_url=server.jwks_url)


def test_discovery_points_at_the_jwks(server):
    base = server.jwks_url.removesuffix("/oauth2/v3/certs")
    doc = requests.get(f"{base}/.well-known/openid-configuration", timeout=5).json()
    assert doc["issuer"] == "https://accounts.google.com"
    assert doc["jwks_uri"] == server.jwks_url
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    for url in (server.jwks_url, server.x509_url):
        r = requests.get(url, timeout=5)
        assert r.headers["Cache-Control"].startswith("public, max-age=")
