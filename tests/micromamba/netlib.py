"""Local network pieces for the download tests: a channel server, a recording proxy, TLS files.

Everything listens on 127.0.0.1 in a thread of the test process and records what it was asked,
so a test can check which files a bootstrap read (the sharded index, one shard, one package --
never repodata.json) and that a proxy was (or was not) used.

- `ChannelServer(root, cut=..., tls=...)`: serves a directory over HTTP or HTTPS; files named in
  `cut` are sent with their full Content-Length but only half their bytes, then the connection
  closes (a download cut short).
- `Proxy()`: an HTTP proxy for absolute-form GETs (http://) and CONNECT tunnels (https://).
- `Silent()`: accepts connections and never answers (a stalled server, for read timeouts).
- `tls_files(dir)`: a CA and a certificate for 127.0.0.1 signed by it, made with openssl.
"""

from __future__ import annotations

import functools
import http.server
import select
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit


class _Server:
    """A threaded server on 127.0.0.1; a context manager that stops it."""

    server: Any

    def __enter__(self) -> _Server:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=30)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


class _ChannelHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, owner: ChannelServer, **kw: Any) -> None:
        self.owner = owner
        super().__init__(*args, directory=str(owner.root), **kw)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the requests are recorded in owner.requests

    def do_GET(self) -> None:
        self.owner.requests.append(urlsplit(self.path).path)
        name = urlsplit(self.path).path.rsplit("/", 1)[-1]
        if name not in self.owner.cut:
            super().do_GET()
            return
        data = (self.owner.root / urlsplit(self.path).path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


class ChannelServer(_Server):
    def __init__(
        self, root: Path, *, cut: tuple[str, ...] = (), tls: tuple[Path, Path] | None = None
    ):
        self.root = root
        self.cut = set(cut)
        self.requests: list[str] = []
        handler = functools.partial(_ChannelHandler, owner=self)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def __init__(self, *args: Any, owner: Proxy, **kw: Any) -> None:
        self.owner = owner
        super().__init__(*args, **kw)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_CONNECT(self) -> None:
        self.owner.requests.append(f"CONNECT {self.path}")
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=30)
        self.send_response(200, "Connection established")
        self.end_headers()
        self._pipe(self.connection, upstream)

    def do_GET(self) -> None:
        self.owner.requests.append(f"GET {self.path}")
        parts = urlsplit(self.path)
        upstream = socket.create_connection((parts.hostname, parts.port or 80), timeout=30)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        head = f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
        upstream.sendall(head.encode())
        self._pipe(self.connection, upstream)
        self.close_connection = True

    @staticmethod
    def _pipe(client: socket.socket, upstream: socket.socket) -> None:
        with upstream:
            sockets = [client, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 30)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)


class Proxy(_Server):
    def __init__(self) -> None:
        self.requests: list[str] = []
        handler = functools.partial(_ProxyHandler, owner=self)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Silent:
    """Listens and accepts, never answers; closed by the context manager."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)  # the kernel completes the handshakes; nobody ever reads

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"


def refused_url() -> str:
    """An http:// URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a throwaway CA and a certificate for 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
            str(ca), "-days", "2", "-subj", "/CN=condatainer test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return ca, cert, key
