"""The URL guard and the guarded fetch, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import ipaddress
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import requests.adapters
from _localhttp import Reply, Route, serve

from morag_worker.errors import BadInput, TaskFailure
from morag_worker.fetch import FetchLimits, fetch
from morag_worker.urlguard import UrlGuard, address_class, check_url

HTML = {"Content-Type": "text/html; charset=utf-8"}
LIMITS = FetchLimits(max_bytes=100_000, total_timeout_s=10, content_types=frozenset({"text/html"}))


def _page(text: str) -> Reply:
    return Reply(200, HTML, f"<html><body><p>{text}</p></body></html>".encode())


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("64:ff9b::a00:1", "private"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("fd12::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("169.254.169.254", "cloud metadata"),
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("2001::1", "Teredo"),
        ("::a00:1", "IPv4-compatible"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_classes(address: str, expected: str | None) -> None:
    assert address_class(ipaddress.ip_address(address)) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8080/x",
        "http://[::1]/",
        "http://10.0.0.5/",
        "http://2130706433/",  # 127.0.0.1 written as one integer; the resolver decodes it
        "http://0x7f.1/",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_private_targets_refused_by_default(url: str) -> None:
    with pytest.raises(BadInput, match="address"):
        check_url(url)


def test_public_literal_passes_and_is_pinned() -> None:
    checked = check_url("https://93.184.216.34:8443/a?b=1")
    assert checked.addresses == (ipaddress.ip_address("93.184.216.34"),)
    assert (checked.scheme, checked.port) == ("https", 8443)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://93.184.216.34/", "only http and https"),
        ("gopher://93.184.216.34/", "only http and https"),
        ("http://user:pw@93.184.216.34/", "credentials"),
        ("http:///nohost", "no host"),
        ("", "empty"),
        ("http://93.184.216.34/a b", "spaces"),
        ("http://93.184.216.34:99999/", "malformed"),
        ("http://metadata.google.internal/", "metadata host"),
    ],
)
def test_malformed_urls_refused(url: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        check_url(url)


def test_allow_private_admits_loopback_but_never_metadata() -> None:
    assert check_url("http://127.0.0.1:1/", allow_private=True).port == 1
    with pytest.raises(BadInput, match="cloud metadata"):
        check_url("http://169.254.169.254/", allow_private=True)
    with pytest.raises(BadInput, match="cloud metadata"):
        check_url("http://[fd00:ec2::254]/", allow_private=True)
    for disguised in ("[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "[64:ff9b::a9fe:a9fe]"):
        with pytest.raises(BadInput, match="cloud metadata"):
            check_url(f"http://{disguised}/", allow_private=True)


def test_allow_list_by_network_and_host() -> None:
    assert check_url("http://10.9.8.7/", allow_list="10.0.0.0/8").host == "10.9.8.7"
    assert check_url("http://localhost/", allow_list="localhost").host == "localhost"
    assert check_url("http://169.254.169.254/", allow_list="169.254.169.254").port == 80
    with pytest.raises(BadInput):
        check_url("http://192.168.1.1/", allow_list="10.0.0.0/8, localhost")
    with pytest.raises(ValueError, match="not a host or CIDR"):
        UrlGuard.from_settings(False, "10.0.0.0/33")


def test_unresolvable_host_is_bad_input() -> None:
    with pytest.raises(BadInput, match="does not resolve"):
        check_url("http://no-such-host.invalid/")


def test_fetch_loopback_refused_unless_allowed() -> None:
    with serve({"/": lambda _h: _page("hello")}) as srv:
        with pytest.raises(BadInput, match="loopback"):
            fetch(srv.url("/"), UrlGuard(), LIMITS)
        assert srv.hosts_seen == []  # refused before any connection
        got = fetch(srv.url("/"), UrlGuard(allow_private=True), LIMITS)
    assert b"hello" in got.body
    assert (got.status, got.content_type, got.charset) == (200, "text/html", "utf-8")


def test_redirects_are_followed_and_each_hop_checked() -> None:
    routes = {
        "/a": lambda _h: Reply(302, {"Location": "/b"}),
        "/b": lambda _h: Reply(301, {"Location": "/final"}),
        "/final": lambda _h: _page("arrived"),
        "/loop": lambda _h: Reply(302, {"Location": "/loop"}),
    }
    with serve(routes) as srv:
        got = fetch(srv.url("/a"), UrlGuard(allow_private=True), LIMITS)
        assert got.redirects == [srv.url("/b"), srv.url("/final")]
        assert b"arrived" in got.body
        with pytest.raises(BadInput, match="redirected more than 5"):
            fetch(srv.url("/loop"), UrlGuard(allow_private=True), LIMITS)


def test_redirect_to_private_address_refused() -> None:
    # The server is reachable as "localhost" (allow-listed by name); its redirect to
    # the same server by address is not allow-listed and must be refused.
    routes: dict[str, Route] = {"/x": lambda _h: _page("private")}
    with serve(routes) as srv:
        target = srv.url("/x")
        routes["/start"] = lambda _h: Reply(302, {"Location": target})
        guard = UrlGuard.from_settings(False, "localhost")
        with pytest.raises(BadInput, match=r"127\.0\.0\.1.*loopback"):
            fetch(srv.url("/start", host="localhost"), guard, LIMITS)
        assert len(srv.hosts_seen) == 1  # the private target was never contacted
        routes["/meta"] = lambda _h: Reply(302, {"Location": "http://169.254.169.254/"})
        with pytest.raises(BadInput, match="cloud metadata"):
            fetch(srv.url("/meta"), UrlGuard(allow_private=True), LIMITS)


def test_oversize_bodies_refused() -> None:
    big = b"<p>" + b"x" * 200_000 + b"</p>"
    routes = {
        "/declared": lambda _h: Reply(200, HTML, big),
        "/streamed": lambda _h: Reply(200, HTML, iter([b"y" * 30_000] * 10)),
        "/gzip": lambda _h: Reply(
            200, {**HTML, "Content-Encoding": "gzip"}, iter([gzip.compress(b"z" * 5_000_000)])
        ),
    }
    guard = UrlGuard(allow_private=True)
    with serve(routes) as srv:
        with pytest.raises(BadInput, match="declares 200007 bytes"):
            fetch(srv.url("/declared"), guard, LIMITS)
        for path in ("/streamed", "/gzip"):
            with pytest.raises(BadInput, match="larger than the limit of 100000"):
                fetch(srv.url(path), guard, LIMITS)


def test_content_type_and_status_mapping() -> None:
    routes = {
        "/pdf": lambda _h: Reply(200, {"Content-Type": "application/pdf"}, b"%PDF"),
        "/none": lambda _h: Reply(200, {}, b"<p>x</p>"),
        "/gone": lambda _h: Reply(410, HTML, b"gone"),
        "/busy": lambda _h: Reply(503, HTML, b"busy"),
        "/slow": lambda _h: Reply(429, HTML, b"slow down"),
    }
    guard = UrlGuard(allow_private=True)
    with serve(routes) as srv:
        with pytest.raises(BadInput, match="'application/pdf'; expected text/html"):
            fetch(srv.url("/pdf"), guard, LIMITS)
        with pytest.raises(BadInput, match="content type 'none'"):
            fetch(srv.url("/none"), guard, LIMITS)
        with pytest.raises(BadInput, match="HTTP 410"):
            fetch(srv.url("/gone"), guard, LIMITS)
        for path in ("/busy", "/slow"):
            with pytest.raises(TaskFailure) as info:
                fetch(srv.url(path), guard, LIMITS)
            assert info.value.retryable and not isinstance(info.value, BadInput)


def test_slow_drip_hits_total_timeout() -> None:
    routes = {"/drip": lambda _h: Reply(200, HTML, iter([b"a"] * 50), delay_s=0.1)}
    limits = FetchLimits(max_bytes=1000, total_timeout_s=1.0, content_types=frozenset())
    with serve(routes) as srv, pytest.raises(TaskFailure, match="ran out of time") as info:
        fetch(srv.url("/drip"), UrlGuard(allow_private=True), limits)
    assert info.value.retryable


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(TaskFailure, match="cannot connect") as info:
        fetch(f"http://127.0.0.1:{port}/", UrlGuard(allow_private=True), LIMITS)
    assert info.value.retryable


def test_fetch_connects_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name is resolved once; the connection uses that answer."""
    real_getaddrinfo = socket.getaddrinfo
    answers: list[str] = []

    def rebinding_resolver(host, port, *args, **kwargs):
        if host == "rebind.test":
            answers.append(host)
            if len(answers) > 1:  # a second lookup would now point somewhere else
                return real_getaddrinfo("10.0.0.1", port, *args, **kwargs)
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_resolver)
    with serve({"/": lambda _h: _page("pinned")}) as srv:
        guard = UrlGuard.from_settings(False, "127.0.0.1/32")
        got = fetch(srv.url("/", host="rebind.test"), guard, LIMITS)
        assert b"pinned" in got.body
        assert answers == ["rebind.test"]
        assert srv.hosts_seen == [f"rebind.test:{srv.port}"]


def _make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for "localhost" signed by it (openssl CLI)."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "k", "csr", "c"))
    ext = directory / "ext"
    ext.write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "authorityKeyIdentifier=keyid\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=Test CA"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out"],
    ]
    commands[-1] += [cert, "-days", "1", "-extfile", ext]
    for command in commands:
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return ca, cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl program")
def test_https_pinned_to_address_still_verifies_the_host_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The URL carries the checked address; SNI and the certificate check use the name."""
    ca, cert, key = _make_certificates(tmp_path)
    # requests verifies against certifi's bundle; let it trust the throwaway CA.
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", str(ca))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with serve({"/": lambda _h: _page("over tls")}, tls=context) as srv:
        guard = UrlGuard.from_settings(False, "localhost, 127.0.0.1")
        url = f"https://localhost:{srv.port}/"
        assert b"over tls" in fetch(url, guard, LIMITS).body
        assert srv.hosts_seen == [f"localhost:{srv.port}"]
        # The certificate names localhost only: by address the check must fail.
        with pytest.raises(BadInput, match="TLS certificate check failed"):
            fetch(f"https://127.0.0.1:{srv.port}/", guard, LIMITS)


def test_every_address_must_pass_and_unreachable_ones_are_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_getaddrinfo = socket.getaddrinfo
    answers = {
        "multi.test": ["127.0.0.2", "127.0.0.1"],
        "mixed.test": ["93.184.216.34", "10.0.0.1"],
    }

    def resolver(host, port, *args, **kwargs):
        if host in answers:
            return [real_getaddrinfo(a, port, *args, **kwargs)[0] for a in answers[host]]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    # One private answer among public ones refuses the URL: the system may pick any.
    with pytest.raises(BadInput, match=r"10\.0\.0\.1, a private address"):
        check_url("http://mixed.test/")
    # Nothing listens on 127.0.0.2 (the server binds 127.0.0.1): the next address is used.
    with serve({"/": lambda _h: _page("second address")}) as srv:
        guard = UrlGuard.from_settings(False, "127.0.0.0/8")
        got = fetch(srv.url("/", host="multi.test"), guard, LIMITS)
    assert b"second address" in got.body


# --- Issue 8 point 12: address forms the guard missed. The guard is called directly;
# no request is ever sent to these addresses.

METADATA_FORMS = [
    "168.63.129.16",  # Azure wireserver
    "192.0.0.192",  # Oracle Cloud (legacy metadata)
    "100.100.100.200",  # Alibaba
    "169.254.170.23",  # EKS Pod Identity
    "[fd00:ec2::254]",  # AWS IPv6
    "[fd20:ce::254]",  # GCP IPv6
    "[::ffff:168.63.129.16]",  # IPv4-mapped
    "[::a9fe:a9fe]",  # IPv4-compatible 169.254.169.254
    "[::ffff:0:a9fe:a9fe]",  # IPv4-translated (SIIT)
    "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
    "[2002:a83f:8110::]",  # 6to4 of 168.63.129.16
    "[64:ff9b::a83f:8110]",  # NAT64 of 168.63.129.16
    "[64:ff9b:1::a9fe:a9fe]",  # local-use NAT64 of 169.254.169.254
]


@pytest.mark.parametrize("host", METADATA_FORMS)
def test_metadata_in_every_form_refused_even_with_allow_private(host: str) -> None:
    with pytest.raises(BadInput, match="cloud metadata"):
        check_url(f"http://{host}/", allow_private=True)
    with pytest.raises(BadInput, match="cloud metadata"):
        check_url(f"http://{host}/")


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("[fe80::1]", "link-local"),
        ("[fe80::a9fe:a9fe]", "link-local"),
        ("169.254.10.1", "link-local"),
        ("[::7f00:1]", "IPv4-compatible"),
        ("[::a00:1]", "IPv4-compatible"),
        ("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "Teredo"),
        ("[2001::1]", "Teredo"),
    ],
)
def test_link_local_teredo_and_ipv4_compatible_refused_even_with_allow_private(
    host: str, kind: str
) -> None:
    for allow_private in (False, True):
        with pytest.raises(BadInput, match=kind) as info:
            check_url(f"http://{host}/", allow_private=allow_private)
        assert "--allow-private-urls" not in info.value.message  # it would not help


@pytest.mark.parametrize(
    "host",
    [
        "192.0.0.8",
        "192.0.0.170",
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[2002:a00:1::1]",  # 6to4 of 10.0.0.1
        "[2002:c0a8:101::]",  # 6to4 of 192.168.1.1
        "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
        "[64:ff9b:1::1]",  # local-use NAT64
        "[::ffff:0:a00:1]",  # IPv4-translated 10.0.0.1
        "[fec0::1]",  # deprecated site-local
        "[100::1]",  # discard-only
        "[3fff::1]",  # documentation (RFC 9637)
        "[5f00::1]",  # SRv6 SIDs
        "[4000::1]",  # outside global unicast 2000::/3
        "198.18.0.1",
        "203.0.113.7",
    ],
)
def test_non_public_forms_refused_by_default(host: str) -> None:
    with pytest.raises(BadInput, match="address"):
        check_url(f"http://{host}/")


@pytest.mark.parametrize(
    "host",
    ["[2002:5db8:d822::1]", "[64:ff9b::5db8:d822]", "[2606:4700::1111]", "93.184.216.34"],
)
def test_public_addresses_in_transition_forms_pass(host: str) -> None:
    check_url(f"http://{host}/")


def test_private_6to4_admitted_with_allow_private_like_its_ipv4() -> None:
    assert check_url("http://[2002:7f00:1::]/", allow_private=True).port == 80
    assert check_url("http://[64:ff9b::a00:1]/", allow_private=True).port == 80


def test_host_resolving_to_metadata_refused_with_allow_private(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_getaddrinfo = socket.getaddrinfo
    answers = {"wire.test": "168.63.129.16", "oci.test": "192.0.0.192", "v6.test": "fd20:ce::254"}

    def resolver(host, port, *args, **kwargs):
        if host in answers:
            return real_getaddrinfo(answers[host], port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    for host in answers:
        with pytest.raises(BadInput, match="cloud metadata"):
            check_url(f"http://{host}/", allow_private=True)
        # A host allow-list entry admits private addresses, never metadata ones.
        with pytest.raises(BadInput, match="cloud metadata"):
            check_url(f"http://{host}/", allow_list=host)
    with pytest.raises(BadInput, match="metadata host"):
        check_url("http://metadata.google.internal./", allow_private=True)


def test_only_an_exact_allow_list_entry_admits_a_metadata_address() -> None:
    for broad in ("100.64.0.0/10", "0.0.0.0/0", "169.254.0.0/16", "::/0"):
        for host in ("100.100.100.200", "169.254.169.254", "[fd00:ec2::254]"):
            with pytest.raises(BadInput, match="cloud metadata"):
                check_url(f"http://{host}/", allow_list=broad)
    assert check_url("http://100.100.100.200/", allow_list="100.100.100.200/32").port == 80
    assert check_url("http://[fd00:ec2::254]/", allow_list="fd00:ec2::254").port == 80
    # A network entry does admit the never-admitted classes: the operator named them.
    assert check_url("http://[fe80::1]/", allow_list="fe80::/10").port == 80
