"""How a source is trusted, and that the decision carries from plan to convert and cutover (issues 12, 16).

- ``--insecure --thumbprint`` is refused (it silently ignored the pin);
- a plan records the accepted certificate's SHA-256 (trust on first use), never ``--insecure``;
  later commands pin it and refuse a changed certificate with both thumbprints;
- ``--ca-file`` (a PEM bundle) and govc's ``GOVC_URL``, ``GOVC_INSECURE``, ``GOVC_TLS_CA_CERTS``;
- the SOAP connection goes through ``HTTPS_PROXY`` unless ``NO_PROXY`` covers the host;
- a password file open to group or others gets a warning, as ssh does.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from core.errors import InputError, SourceError
from migrator import simulator
from migrator.simulator import seed
from migrator.sources import SourceOptions, open_source
from migrator.sources.credentials import read_password
from migrator.sources.vsphere.connection import Location, fetch_certificate, format_thumbprint, tls_context
from tests.connect_proxy import connect_proxy as run_connect_proxy
from tests.convert.helpers import MIGRATOR, PROJECT, images_equal, make_vmdk

ENV = "MIGRATOR_VSPHERE_PASSWORD"


def _clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without proxies or govc settings from the machine, plus ``extra``."""
    drop = {"HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("GOVC_", "MIGRATOR_"))}
    if "MIGRATOR_SKIP_CONVERSION" in os.environ:  # the suite's disks hold no OS: no guest conversion
        env["MIGRATOR_SKIP_CONVERSION"] = os.environ["MIGRATOR_SKIP_CONVERSION"]
    env.update(extra)
    return env


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real CLI with exactly ``env`` (helpers.migrator would merge ours in)."""
    return subprocess.run([str(MIGRATOR), *args], capture_output=True, text=True, timeout=300, env=env, cwd=PROJECT)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "internal error" not in lines[0], result.stderr
    return lines[0]


def test_insecure_with_thumbprint_is_refused() -> None:
    """The Acceptance: `migrator plan --insecure --thumbprint X …` is refused (before connecting anywhere)."""
    result = _run(
        "plan", "--source", "vsphere://someone@127.0.0.1:9", "--insecure", "--thumbprint", "AB" * 32,
        env=_clean_env(**{ENV: "x"}),
    )  # fmt: skip
    assert result.returncode == 2
    assert "--insecure and --thumbprint contradict each other" in _one_line(result)


def test_plan_records_the_certificate_and_later_commands_pin_it(
    fresh_vcsim: simulator.Simulator, tmp_path: Path
) -> None:
    sparse = make_vmdk(tmp_path / "sparse.vmdk", "8M", 0x5A)
    seed.attach_disk_image(fresh_vcsim, "DC0_H0_VM0", [sparse], power_off=True)
    # the disk holds no OS: only the bytes are converted here (this test is about trust, not the guest)
    env = _clean_env(**{ENV: fresh_vcsim.password, "MIGRATOR_SKIP_CONVERSION": "1"})
    plan_file = tmp_path / "plan.yaml"
    made = _run(
        "plan", "--source", fresh_vcsim.source_url(), "--insecure", "--vm", "DC0_H0_VM0",
        "--output-file", str(plan_file), env=env,
    )  # fmt: skip
    assert made.returncode in (0, 3), made.stderr
    text = plan_file.read_text()
    recorded = yaml.safe_load(text)["source_thumbprint"]
    presented = hashlib.sha256(fetch_certificate(fresh_vcsim.host, fresh_vcsim.port)).hexdigest()
    assert recorded == presented
    assert "insecure" not in text.lower()

    # convert --plan without --insecure: the recorded certificate is trusted, nothing else
    out = tmp_path / "out"
    converted = _run("convert", "--plan", str(plan_file), "--vm", "DC0_H0_VM0", "--output-dir", str(out), env=env)
    assert converted.returncode == 0, converted.stderr
    image = out / "dc0-h0-vm0-disk-0.img"
    assert images_equal(sparse, image)
    assert image.stat().st_mode & 0o777 == 0o600 and out.stat().st_mode & 0o777 == 0o700

    # a changed certificate (here: a plan that recorded another one) is refused, with both thumbprints
    other = "ab" * 32
    plan_file.write_text(text.replace(recorded, other))
    for command in (
        ["convert", "--plan", str(plan_file), "--vm", "DC0_H0_VM0", "--output-dir", str(tmp_path / "out2")],
        ["cutover", "--plan", str(plan_file), "--vm", "DC0_H0_VM0", "--output-dir", str(tmp_path / "out3")],
    ):
        state = {"MIGRATOR_STATE_DIR": str(tmp_path / "state")}
        line = _one_line(_run(*command, env={**env, **state}))
        assert "changed since the plan was made" in line, line
        assert format_thumbprint(other) in line and format_thumbprint(presented) in line
    assert not (tmp_path / "out2").exists() or not list((tmp_path / "out2").glob("*.img"))
    # an explicit choice on the command line still wins over the recorded pin
    again = _run(
        "convert", "--plan", str(plan_file), "--vm", "DC0_H0_VM0", "--output-dir", str(out),
        "--thumbprint", presented, env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_govc_environment(vcsim: simulator.Simulator, tmp_path: Path) -> None:
    url = f"https://{vcsim.username}:{vcsim.password}@{vcsim.host}:{vcsim.port}/sdk"
    env = _clean_env(GOVC_URL=url, GOVC_INSECURE="1")
    result = _run("plan", "--vm", "DC0_H0_VM0", "--output-file", str(tmp_path / "plan.yaml"), "-o", "json", env=env)
    assert result.returncode in (0, 3), result.stderr
    plan_text = (tmp_path / "plan.yaml").read_text()
    assert vcsim.password not in plan_text + result.stdout + result.stderr
    assert yaml.safe_load(plan_text)["source"] == vcsim.source_url()
    # GOVC_INSECURE is a default: a --thumbprint on the command line wins (a wrong one is refused)
    pinned = _run("plan", "--thumbprint", "AB" * 32, "--output-file", "-", env=env)
    assert "certificate thumbprint mismatch" in _one_line(pinned)
    # the MIGRATOR_* defaults of every option still work beside govc's
    ours = _clean_env(GOVC_URL=url, MIGRATOR_PLAN_INSECURE="1")
    assert _run("plan", "--vm", "DC0_H0_VM0", "--output-file", "-", env=ours).returncode in (0, 3)
    assert "certificate verify failed" in _one_line(_run("plan", "--output-file", "-", env=_clean_env(GOVC_URL=url)))


def test_password_file_open_to_others_gets_a_warning(
    vcsim: simulator.Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pw"
    secret.write_text(vcsim.password + "\n")
    options = SourceOptions(password_file=str(secret), prompt=False)
    secret.chmod(0o644)
    assert read_password(options, "u@h") == vcsim.password
    warning = capsys.readouterr().err
    assert f"warning: password file {secret} is open to group or others (mode 0644): chmod 600" in warning
    assert vcsim.password not in warning
    secret.chmod(0o600)
    read_password(options, "u@h")
    assert capsys.readouterr().err == ""


# -- --ca-file against a real TLS server whose certificate a private CA signed -------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a CA and a 127.0.0.1 certificate it signed."""
    d = tmp_path_factory.mktemp("ca")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=migrator test CA", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)  # fmt: skip
    return d / "ca.pem", d / "server.pem", d / "server.key"


@pytest.fixture
def tls_server(private_ca: tuple[Path, Path, Path]) -> Iterator[int]:
    """A TLS server on loopback that answers every request with a non-vSphere 404."""
    _, cert, key = private_ca
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    tls.settimeout(5)
                    tls.recv(65536)
                    tls.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def _handshake(context: ssl.SSLContext, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1"):
            pass


def test_ca_file_trusts_exactly_that_bundle(
    private_ca: tuple[Path, Path, Path], tls_server: int, tmp_path: Path
) -> None:
    ca, _, _ = private_ca
    location = Location("someone", "127.0.0.1", tls_server)
    _handshake(tls_context(location, insecure=False, thumbprint=None, ca_file=str(ca)), tls_server)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls_context(location, insecure=False, thumbprint=None), tls_server)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(InputError, match="not a PEM bundle"):
        tls_context(location, insecure=False, thumbprint=None, ca_file=str(junk))
    # through the CLI, from govc's variable: past TLS (the server is simply not a vCenter)
    env = _clean_env(**{ENV: "x", "GOVC_TLS_CA_CERTS": str(ca)})
    line = _one_line(
        _run("plan", "--source", f"vsphere://someone@127.0.0.1:{tls_server}", "--output-file", "-", env=env)
    )
    assert "certificate verify failed" not in line, line
    line = _one_line(_run("plan", "--source", f"vsphere://someone@127.0.0.1:{tls_server}", "--output-file", "-",
                          env=_clean_env(**{ENV: "x"})))  # fmt: skip
    assert "certificate verify failed" in line


# -- HTTPS_PROXY / NO_PROXY -----------------------------------------------------------------------------


@pytest.fixture
def connect_proxy() -> Iterator[tuple[int, list[str]]]:
    """A real HTTP CONNECT proxy on loopback; yields (port, the targets it tunnelled to)."""
    with run_connect_proxy() as proxy:
        yield proxy


def test_soap_connection_honours_https_proxy_and_no_proxy(
    vcsim: simulator.Simulator, connect_proxy: tuple[int, list[str]]
) -> None:
    port, tunnels = connect_proxy
    proxied = _clean_env(**{ENV: vcsim.password, "HTTPS_PROXY": f"http://127.0.0.1:{port}"})
    args = ("plan", "--source", vcsim.source_url(), "--insecure", "--vm", "DC0_H0_VM0", "--output-file", "-")
    result = _run(*args, env=proxied)
    assert result.returncode in (0, 3), result.stderr
    assert f"{vcsim.host}:{vcsim.port}" in tunnels and len(tunnels) >= 2  # the SOAP session and the certificate
    tunnels.clear()
    bypassed = _run(*args, env={**proxied, "NO_PROXY": vcsim.host})
    assert bypassed.returncode in (0, 3), bypassed.stderr
    assert tunnels == []


def test_pinned_open_source_refuses_a_changed_certificate(vcsim: simulator.Simulator) -> None:
    os.environ[ENV] = vcsim.password
    try:
        presented = hashlib.sha256(fetch_certificate(vcsim.host, vcsim.port)).hexdigest()
        pinned = SourceOptions(prompt=False).pinned_to(presented)
        source = open_source(vcsim.source_url(), pinned)
        assert source.certificate_thumbprint == presented
        source.close()
        with pytest.raises(SourceError, match="changed since the plan was made"):
            open_source(vcsim.source_url(), SourceOptions(prompt=False).pinned_to("cd" * 32))
        # an explicit --insecure is the user's choice for this command: no pin
        assert SourceOptions(insecure=True).pinned_to("cd" * 32).thumbprint is None
    finally:
        del os.environ[ENV]


def test_govc_url_forms() -> None:
    from migrator.sources.govc import govc_target

    assert govc_target({}) is None
    full = govc_target({"GOVC_URL": "https://admin%40corp:p%3Ass@vc.example.com/sdk"})
    assert full is not None and full.source() == "vsphere://admin@corp@vc.example.com" and full.password == "p:ss"
    bare = govc_target({"GOVC_URL": "vc.example.com:8443", "GOVC_USERNAME": "root", "GOVC_PASSWORD": "pw"})
    assert bare is not None and bare.source() == "vsphere://root@vc.example.com:8443" and bare.password == "pw"
    with pytest.raises(InputError, match="names no user"):
        govc_target({"GOVC_URL": "vc.example.com"}).source()  # type: ignore[union-attr]
