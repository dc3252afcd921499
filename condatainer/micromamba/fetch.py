"""Host downloads: one GET over `file://`, `http://` or `https://`, with explicit timeouts.

The standard library's urllib is the transport (no HTTP client dependency for a handful of
requests); what it leaves implicit is made explicit here:

- Proxies: `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (either case) of this process's environment,
  through urllib's ProxyHandler, which tunnels https through a proxy with CONNECT.
- Certificates: a site CA bundle from config `ca_bundle`, else `SSL_CERT_FILE`/`SSL_CERT_DIR`
  (read by OpenSSL's defaults), else the system store.  A bundle that cannot be read is an
  error naming it, not a silent fallback.
- Timeouts: `CONNECT_TIMEOUT` covers the TCP connect, a proxy's CONNECT and the TLS handshake;
  after that the socket gets `READ_TIMEOUT`, the longest wait for the next bytes of a response.
  A refused or unreachable address fails at once; a silent one fails after the timeout.
- `file://` URLs are read directly (what the local test channel and site mirrors on a shared
  filesystem use), through the same calls, so callers never special-case them.

Failures are `FetchError` (one line naming the URL and the cause); a missing file or an HTTP
404 is its subclass `NotFound`, which a caller may use to fall back to another file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import unquote, urlsplit

CONNECT_TIMEOUT = 15.0  # seconds: connect, proxy CONNECT, TLS handshake
READ_TIMEOUT = 60.0  # seconds: the longest silence while reading a response
_CHUNK = 1 << 16
USER_AGENT = "condatainer (micromamba bootstrap)"


class FetchError(Exception):
    """A download failed; `str()` is one line naming the URL and the cause."""

    def __init__(self, url: str, cause: str):
        super().__init__(f"{url}: {cause}")
        self.url = url
        self.cause = cause


class NotFound(FetchError):
    """The server (or the filesystem) says there is no such file."""


class Damaged(FetchError):
    """What arrived is not what the index promised: cut short, or another checksum."""


@dataclass(frozen=True)
class Downloaded:
    """What `Fetcher.download` wrote: its size and sha256 (hex)."""

    size: int
    sha256: str


class _HTTPConnection(http.client.HTTPConnection):
    """Connects within the connect timeout, then waits at most READ_TIMEOUT for each read."""

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(READ_TIMEOUT)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()  # TCP, the proxy tunnel and the TLS handshake, in the connect timeout
        self.sock.settimeout(READ_TIMEOUT)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, context: ssl.SSLContext):
        super().__init__(context=context)
        self.cnt_context = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req, context=self.cnt_context)


def ssl_context(ca_bundle: str | None, environ: Mapping[str, str] = os.environ) -> ssl.SSLContext:
    """The TLS context: config `ca_bundle`, else SSL_CERT_FILE/SSL_CERT_DIR, else the system's.

    Raises FetchError (with the bundle as the "URL") when a named bundle cannot be loaded.
    """
    cafile = os.path.expanduser(ca_bundle) if ca_bundle else environ.get("SSL_CERT_FILE") or None
    capath = None if ca_bundle else (environ.get("SSL_CERT_DIR") or None)
    where = "config ca_bundle" if ca_bundle else "SSL_CERT_FILE"
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as exc:
        shown = cafile or capath or "the system certificate store"
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise FetchError(str(shown), f"cannot load the CA bundle ({where}): {reason}") from None


class Fetcher:
    """GETs with the proxies, certificates and timeouts described in the module docstring."""

    def __init__(self, ca_bundle: str | None = None):
        self._ca_bundle = ca_bundle
        self._opener: urllib.request.OpenerDirector | None = None

    def _open_url(self, url: str) -> Any:
        if self._opener is None:
            self._opener = urllib.request.build_opener(
                urllib.request.ProxyHandler(),  # *_proxy and no_proxy of the environment
                _HTTPHandler(),
                _HTTPSHandler(ssl_context(self._ca_bundle)),
            )
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            return self._opener.open(request, timeout=CONNECT_TIMEOUT)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (404, 410):
                raise NotFound(url, f"not found (HTTP {exc.code})") from None
            raise FetchError(url, f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise FetchError(url, _describe(exc.reason)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(url, _describe(exc)) from None

    def get(self, url: str, *, limit: int = 1 << 30) -> bytes:
        """The whole body of `url` (at most `limit` bytes)."""
        chunks: list[bytes] = []
        total = 0

        def keep(chunk: bytes) -> None:
            nonlocal total
            total += len(chunk)
            if total > limit:
                raise FetchError(url, f"larger than {limit} bytes; refusing to read it")
            chunks.append(chunk)

        self._stream(url, keep)
        return b"".join(chunks)

    def download(self, url: str, out: IO[bytes]) -> Downloaded:
        """Write the body of `url` to `out`; return its size and sha256.

        Write errors (a full disk) are OSErrors from `out`, left for the caller to name.
        """
        digest = hashlib.sha256()
        size = 0

        def write(chunk: bytes) -> None:
            nonlocal size
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)

        self._stream(url, write)
        out.flush()
        return Downloaded(size, digest.hexdigest())

    def _stream(self, url: str, sink: Callable[[bytes], None]) -> None:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "file":
            self._stream_file(url, sink)
        elif scheme in ("http", "https"):
            self._stream_http(url, sink)
        else:
            raise FetchError(
                url, f"unsupported URL scheme {scheme!r} (use https://, http:// or file://)"
            )

    def _stream_file(self, url: str, sink: Callable[[bytes], None]) -> None:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise FetchError(url, "file:// URLs must name a local path (file:///path)")
        path = urllib.request.url2pathname(unquote(parts.path))
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below; the sink's errors stay its own
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(url, "no such file") from None
        except IsADirectoryError:
            raise FetchError(url, "is a directory") from None
        except OSError as exc:
            raise FetchError(url, exc.strerror or str(exc)) from None
        with f:
            while True:
                try:
                    chunk = f.read(_CHUNK)
                except OSError as exc:
                    raise FetchError(url, exc.strerror or str(exc)) from None
                if not chunk:
                    break
                sink(chunk)

    def _stream_http(self, url: str, sink: Callable[[bytes], None]) -> None:
        response = self._open_url(url)
        with response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            got = 0
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except http.client.IncompleteRead as exc:
                    got += len(exc.partial)
                    raise Damaged(url, _cut_short(got, expected)) from None
                except (OSError, http.client.HTTPException) as exc:
                    raise FetchError(url, _describe(exc)) from None
                if not chunk:
                    break
                got += len(chunk)
                sink(chunk)
            if expected is not None and got < expected:
                raise Damaged(url, _cut_short(got, expected))


def _cut_short(got: int, expected: int | None) -> str:
    of = f" of {expected}" if expected is not None else ""
    return f"the download was cut short ({got}{of} bytes arrived)"


def _describe(reason: object) -> str:
    """One readable line for what urllib or a socket raised."""
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"no answer within {CONNECT_TIMEOUT:g} s to connect or {READ_TIMEOUT:g} s to read"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"certificate verification failed ({reason.verify_message}); a site CA bundle goes"
            " in config ca_bundle or SSL_CERT_FILE"
        )
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {reason.reason or reason}"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name ({reason.strerror})"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError):
        return reason.strerror or str(reason) or type(reason).__name__
    if isinstance(reason, http.client.HTTPException):
        return f"bad HTTP response ({type(reason).__name__}: {reason})"
    return str(reason)
