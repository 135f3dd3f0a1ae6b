"""Fixtures for the real-client tests: a running `moat serve-identity` and a way to run a
Google client in a fresh interpreter pointed at it.

google-auth reads GCE_METADATA_HOST once, at import time (spec/clients.md §1), so every client
runs in its own subprocess with exactly the environment a workload would have; this process
never talks to the metadata server itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = "examples/shop"
SA = "api@shop-prod.iam.gserviceaccount.com"
PROJECT_ID = "shop-prod"
AUD = "https://api-abc123-uc.a.run.app"

# Variables that would send a client somewhere else than the server under test.
_FOREIGN_ENV = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "GCE_METADATA_HOST",
    "GCE_METADATA_ROOT",
    "GCE_METADATA_IP",
    "GCE_METADATA_MTLS_MODE",
    "NO_GCE_CHECK",
    "GOOGLE_API_CERTIFICATE_CONFIG",
)


def moat_bin() -> Path:
    path = Path(os.environ.get("MOAT_BIN", REPO / "target" / "debug" / "moat"))
    if not path.exists():
        pytest.fail(f"{path} does not exist: build it with `cargo build -p moat` (or set MOAT_BIN)")
    return path


def flat(diagnostic: str) -> str:
    """A miette diagnostic as one line: its wrapping depends on the terminal width."""
    return " ".join(diagnostic.replace("│", " ").split())


def moat(*args: str, **kw) -> subprocess.CompletedProcess:
    """Runs the moat binary from the repository root and captures its output."""
    return subprocess.run([str(moat_bin()), *args], cwd=REPO, capture_output=True, text=True, timeout=60, **kw)


class Served:
    """A running `moat serve-identity` and the environment lines it printed."""

    def __init__(self, proc: subprocess.Popen, env: dict[str, str], stderr: Path):
        self.proc = proc
        self.env = env
        self.stderr = stderr

    @property
    def jwks_url(self) -> str:
        return self.env["MOAT_JWKS_URL"]

    @property
    def x509_url(self) -> str:
        return self.env["MOAT_X509_CERTS_URL"]

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit status (killed after 10 s if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def serve(state: Path, account: str = SA) -> Served:
    """Starts `moat serve-identity` and waits for its five environment lines."""
    stderr = state / "serve-identity.stderr"
    state.mkdir(parents=True, exist_ok=True)
    with open(stderr, "w") as err:
        proc = subprocess.Popen(
            [str(moat_bin()), "serve-identity", PROJECT, "--as", f"serviceAccount:{account}", "--state", str(state)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    env: dict[str, str] = {}
    served = Served(proc, env, stderr)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            name, _, value = line.strip().partition("=")
            env[name] = value
            if len(env) == 5:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    if len(env) < 5:
        served.stop()
        pytest.fail(f"serve-identity printed {env} within 30 s; stderr:\n{stderr.read_text()}")
    return served


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Served:
    """One `moat serve-identity examples/shop --as serviceAccount:api@...` for the session."""
    served = serve(tmp_path_factory.mktemp("state"))
    yield served
    served.stop()


@pytest.fixture(scope="session")
def state_dir(server) -> Path:
    """The state directory of the session's server (its signing keys are under keys/)."""
    return Path(server.proc.args[-1])


@pytest.fixture()
def client_env(server, tmp_path) -> dict[str, str]:
    """What a workload process gets: the metadata host and ping address, no credentials file,
    an empty gcloud configuration directory."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV and not k.startswith("CLOUDSDK_")}
    config = tmp_path / "gcloud-config"
    config.mkdir()
    env.update(
        GCE_METADATA_HOST=server.env["GCE_METADATA_HOST"],
        GCE_METADATA_IP=server.env["GCE_METADATA_IP"],
        CLOUDSDK_CONFIG=str(config),
    )
    return env


def run_python(code: str, env: dict[str, str]) -> dict:
    """Runs `code` in a fresh interpreter with `env`; the code prints one JSON object."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"client failed ({proc.returncode}):\n{proc.stderr}"
    return json.loads(proc.stdout)


@contextmanager
def moat_up(project: Path, state: Path, tmp: Path, ready: str):
    """`moat up PROJECT --state STATE` until the block ends (SIGTERM, SIGKILL after 20 s).
    Fails unless its `ready:` line starts with `ready` within 60 s; yields the printed lines
    and the admin listener's `/status` services by name."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV and not k.startswith("CLOUDSDK_")}
    env.pop("MOAT_MASTER_KEY", None)
    stderr = open(tmp / "moat.stderr", "w")
    proc = subprocess.Popen(
        [str(moat_bin()), "up", str(project), "--state", str(state)],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
    )
    lines: list[str] = []

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("ready:"):
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)
    try:
        if not any(l.startswith(ready) for l in lines):
            pytest.fail("moat up did not get ready:\n" + "\n".join(lines) + "\n" + (tmp / "moat.stderr").read_text())
        admin = next(l.split()[1] for l in lines if l.split()[:1] == ["admin"])
        with urllib.request.urlopen(f"http://{admin}/status", timeout=10) as resp:
            services = {s["service"]: s for s in json.load(resp)["services"]}
        yield lines, services
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr.close()
