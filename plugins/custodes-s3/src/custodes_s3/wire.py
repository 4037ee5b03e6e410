"""The requests a store makes once per object or per page, GetObject, the conditional PutObject,
PutObjectRetention and the ListObjectVersions pages, sent without botocore's request machinery: signed by
botocore's own SigV4 signer with the store's credentials, sent through a urllib3 connection pool of the store's
own, and only the headers and fields custodes reads parsed.

Why: botocore spends about 1.1 ms of CPU on every request (parameter validation, serialisation, its event
hooks, endpoint rules, response parsing), GET or HEAD alike, and the server shares the machine's two cores
here; a small object's verify is one GET and its ingest a PUT, a GET and a retention. This path takes about
0.45 ms a GET (``benches/s3_request_cpu.py``). Everything else (HEADs, legal holds, multipart uploads, the
bucket's probes) stays on the boto3 client, and so does any request this path cannot answer:

- it is used only where the archive names an ``endpoint`` (path-style URLs, ``<endpoint>/<bucket>/<key>``, as
  the client is configured there), never on AWS itself, where botocore resolves the bucket's host, region
  redirects, FIPS and dual-stack endpoints; nor through a proxy the environment names for the endpoint;
- a request that gets no answer (the connection failed or dropped, a timeout) or a server error (5xx) raises
  :class:`Unanswered` before any byte of a body was given out, and the store sends it again through botocore,
  whose retries (standard mode, 5 attempts) are the one retry policy. A PUT whose answer was lost may have
  been stored: botocore's retry then gets 412, as its own retry would, and the store checks that object as it
  checks any it finds (read back, locked, reported not new);
- every other answer that is not a success raises botocore's own ``ClientError``, built as botocore builds it
  (the error's Code and Message from the XML body, the status, the headers), so the store maps it exactly as
  before: 404 NoSuchKey or NoSuchVersion, 403, a delete marker, 412 on ``If-None-Match: *``, 400 BadDigest.

Credentials are those of the boto3 session the client was made from (the environment's or the named
profile's), frozen per request as botocore's own signer does (temporary ones refresh). TLS is verified against
the CA bundle botocore would use (``AWS_CA_BUNDLE``, the profile's ``ca_bundle``, ``REQUESTS_CA_BUNDLE``, else
certifi's).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote, unquote_plus, urlsplit
from xml.sax.saxutils import escape

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError
from botocore.utils import get_environ_proxies, parse_timestamp

__all__ = ["KNOWN_SHA256", "KnownPayloadSigner", "Stream", "Unanswered", "Wire", "wire_for"]

#: Bytes of an error's body read to find its Code and Message (S3's are a few hundred).
_ERROR_BODY = 64 * 1024
_S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
#: Bytes handed to the socket at a time for a PUT's body (urllib3's default, 16 KiB, is 4,096 sends a 64 MiB PUT).
_SEND_BLOCK = 1 * 2**20


class Unanswered(Exception):
    """The request got no answer this path can give (no connection, a dropped one, a timeout, a server error):
    the caller sends it through botocore instead, whose retries decide. ``markers``: where a listing stopped."""

    def __init__(self, message: str, markers: tuple[str, str] = ("", "")) -> None:
        super().__init__(message)
        self.markers = markers


def wire_for(client: Any, session: Any, bucket: str, endpoint: str, connections: int) -> Wire | None:
    """The store's direct path to ``bucket``, or None where the requests stay on botocore (no endpoint named: AWS
    itself; a proxy for the endpoint)."""
    if not endpoint or get_environ_proxies(endpoint):
        return None
    return Wire(client, session, bucket, endpoint, connections)


class Wire:
    """The direct requests (module notes) on one bucket, thread-safe (a pool of ``connections`` kept
    connections; more threads than that open short-lived ones)."""

    def __init__(self, client: Any, session: Any, bucket: str, endpoint: str, connections: int) -> None:
        self._credentials = session.get_credentials()
        self._region = client.meta.region_name
        self._base = endpoint.rstrip("/") + "/" + bucket + "/"
        config = client.meta.config
        pool: dict[str, Any] = {
            "maxsize": connections,
            "retries": False,
            "timeout": urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout),
            "blocksize": _SEND_BLOCK,
        }
        if urlsplit(endpoint).scheme == "https":
            verify = session._session.get_config_variable("ca_bundle") or os.environ.get("REQUESTS_CA_BUNDLE")
            from botocore.httpsession import get_cert_path

            pool.update(cert_reqs="CERT_REQUIRED", ca_certs=get_cert_path(verify or True))
        self._pool = urllib3.connection_from_url(self._base, **pool)
        # Observers of the client's requests (benches/_s3_calls.py, tests counting requests) see these too.
        self._events = client.meta.events

    def url(self, key: str, query: Mapping[str, str] | None = None) -> str:
        """The object's URL as botocore writes it (the key percent-encoded but for ``/`` and ``~``; the query's
        names and values as SigV4 encodes them, a name with no value, such as ``retention``, written bare; no
        key: the bucket's own URL)."""
        asked = "&".join(_quoted(k) + (f"={_quoted(v)}" if v else "") for k, v in (query or {}).items())
        where = self._base + quote(key, safe="/~") if key else self._base.rstrip("/")
        return where + ("?" + asked if asked else "")

    def get(self, key: str, version: str | None = None, byte_range: str | None = None) -> tuple[Any, dict[str, Any]]:
        """GetObject: its body as a :class:`Stream` and its headers as botocore names them (``ContentLength``,
        ``VersionId``, ``ObjectLockMode``, ``ObjectLockRetainUntilDate``, ``ObjectLockLegalHoldStatus``)."""
        headers = {"Range": byte_range} if byte_range else {}
        r = self._send("GetObject", "GET", self.url(key, {"versionId": version} if version else None), headers)
        return Stream(r), _head(r.headers)

    def put(self, key: str, body: IO[bytes], size: int, sha256: str, checksum: str) -> str | None:
        """PutObject ``If-None-Match: *`` of ``size`` bytes from ``body`` carrying ``x-amz-checksum-sha256``
        (``checksum``, base64): the new version's id. Signed as botocore signs it, with ``sha256`` (hex, the
        same digest) as the payload hash where botocore would read the body to hash it (plain http): the server
        checks the bytes against both."""
        headers = {
            "Content-Length": str(size),
            "Content-Type": "application/octet-stream",
            "If-None-Match": "*",
            "x-amz-checksum-sha256": checksum,
        }
        context = {
            # What botocore's S3 signer reads to choose the payload hash: a checksum header and a streaming body
            # sign UNSIGNED-PAYLOAD over https, as botocore's PutObject does; plain http signs the bytes' hash.
            "checksum": {"request_algorithm": {"in": "header", "name": "x-amz-checksum-sha256"}},
            "has_streaming_input": True,
            KNOWN_SHA256: sha256,
        }
        r = self._send("PutObject", "PUT", self.url(key), headers, body, context)
        try:
            Stream(r).read()  # an empty body, of any encoding: the connection is kept for the next request
            version: str | None = r.headers.get("x-amz-version-id")
            return version
        finally:
            close(r)

    def list_versions(
        self, prefix: str, key_marker: str = "", delimiter: str = "", page_size: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """ListObjectVersions, page after page, each page as botocore's paginator gives it (``Versions`` and
        ``DeleteMarkers`` with ``Key``, ``VersionId``, ``IsLatest``, ``LastModified`` (aware), and a version's
        ``Size`` and ``ETag``; ``CommonPrefixes``; ``IsTruncated``, ``NextKeyMarker``, ``NextVersionIdMarker``),
        keys asked URL-encoded (a key may hold what XML cannot) and decoded where the server did, as botocore
        does. Unanswered
        names the markers to go on from (``.markers``), so that botocore can take over mid-listing."""
        version_marker = ""
        while True:
            query = {"versions": "", "encoding-type": "url", "max-keys": str(page_size), "prefix": prefix}
            query |= {"key-marker": key_marker} if key_marker else {}
            query |= {"version-id-marker": version_marker} if version_marker else {}
            query |= {"delimiter": delimiter} if delimiter else {}
            try:
                r = self._send("ListObjectVersions", "GET", self.url("", query), {})
                try:
                    body = Stream(r).read()
                finally:
                    close(r)
                page = _versions_page(body)
            except (Unanswered, OSError, ElementTree.ParseError, KeyError, ValueError) as e:
                raise Unanswered(f"ListObjectVersions: {e}", markers=(key_marker, version_marker)) from e
            yield page
            key_marker, version_marker = page.get("NextKeyMarker", ""), page.get("NextVersionIdMarker", "")
            if not page["IsTruncated"] or not key_marker:
                return

    def put_retention(self, key: str, version: str | None, mode: str, until: datetime) -> None:
        """PutObjectRetention of one version: ``mode`` until ``until`` (whole seconds, UTC), with the Content-MD5
        S3 requires of it. Refused (a shortening, a date in the past): botocore's ClientError, as its own call's."""
        body = (
            f'<Retention xmlns="{_S3_XMLNS}"><Mode>{escape(mode)}</Mode>'
            f"<RetainUntilDate>{until.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}</RetainUntilDate></Retention>"
        ).encode()
        headers = {
            "Content-Length": str(len(body)),
            "Content-Type": "application/xml",
            "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
        }
        query = {"retention": ""} | ({"versionId": version} if version else {})
        r = self._send("PutObjectRetention", "PUT", self.url(key, query), headers, body)
        try:
            Stream(r).read()
        finally:
            close(r)

    def _send(
        self,
        operation: str,
        method: str,
        url: str,
        headers: dict[str, str],
        body: IO[bytes] | bytes | None = None,
        context: dict[str, Any] | None = None,
    ) -> Any:
        """One signed request; the response once its status is a success (its body unread), else ClientError
        (an answer) or Unanswered (none, or a server error: botocore retries it)."""
        request = AWSRequest(method=method, url=url, headers=headers, data=body)
        request.context.update(context or {})
        KnownPayloadSigner(self._credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
        # Observed, never answered here: what a handler returns is not used (botocore's Stubber has no say).
        self._events.emit(f"before-send.s3.{operation}", request=request)
        try:
            r = self._pool.urlopen(
                method,
                url,
                body=body,
                headers=dict(request.headers.items()),
                preload_content=False,
                decode_content=False,
                redirect=False,
                retries=False,
                assert_same_host=False,
            )
        except urllib3.exceptions.HTTPError as e:
            raise Unanswered(f"{operation}: {type(e).__name__}: {e}") from e
        if r.status < 300:
            return r
        try:
            if r.status >= 500:
                raise Unanswered(f"{operation}: HTTP {r.status}")
            raise _client_error(operation, r)
        finally:
            close(r)


class Stream:
    """A GET's body: ``read(n)`` (all of it with no ``n``) and ``close``. A failure while reading (the connection
    dropped, a timeout, fewer bytes than Content-Length) is an OSError, as a file's would be."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def read(self, n: int | None = None) -> bytes:
        try:
            data: bytes = self._response.read(n, decode_content=False)
        except urllib3.exceptions.HTTPError as e:
            raise OSError(errno.EIO, f"{type(e).__name__}: {e}") from e
        return data

    def close(self) -> None:
        close(self._response)


def close(response: Any) -> None:
    """Give the connection back to the pool when the body was read to its end; otherwise drop it (what is left
    of a body, or one of no stated length, is never read just to keep a connection, and a connection is never
    reused in the middle of one)."""
    if not response.closed and response.length_remaining != 0:
        response.close()
    response.release_conn()


#: Where a body's known SHA-256 (hex) waits in a request's context for :class:`KnownPayloadSigner`.
KNOWN_SHA256 = "custodes_known_sha256"


class KnownPayloadSigner(S3SigV4Auth):  # type: ignore[misc]
    """S3's SigV4 signer whose payload hash is the body's known SHA-256 wherever it would hash the body itself
    (plain http): a body custodes hashed already (a part, a small object, for its ``x-amz-checksum-sha256``)
    is not read and hashed a second time. The server checks the bytes it receives against both."""

    def payload(self, request: Any) -> str:
        known = request.context.get(KNOWN_SHA256)
        if known and self._should_sha256_sign_payload(request) and not self._is_streaming_checksum_payload(request):
            return str(known)
        return str(super().payload(request))


def _head(headers: Mapping[str, str]) -> dict[str, Any]:
    """The headers of a GET custodes reads, named and typed as botocore's GetObject output names them."""
    head: dict[str, Any] = {}
    if (length := headers.get("content-length")) is not None:
        head["ContentLength"] = int(length)
    for name, header in (
        ("VersionId", "x-amz-version-id"),
        ("ObjectLockMode", "x-amz-object-lock-mode"),
        ("ObjectLockLegalHoldStatus", "x-amz-object-lock-legal-hold"),
        ("ContentRange", "content-range"),
    ):
        if (value := headers.get(header)) is not None:
            head[name] = value
    if until := headers.get("x-amz-object-lock-retain-until-date"):
        head["ObjectLockRetainUntilDate"] = _timestamp(until)
    return head


def _timestamp(value: str) -> datetime:
    """An ISO 8601 date (S3's lock dates), aware; botocore's own parser for anything else it takes."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return parse_timestamp(value)  # type: ignore[no-any-return]
    return when if when.tzinfo is not None else parse_timestamp(value)


def _quoted(text: str) -> str:
    """A query's name or value as SigV4 encodes it (everything but A-Z a-z 0-9 - _ . ~)."""
    return quote(text, safe="-_.~")


def _versions_page(body: bytes) -> dict[str, Any]:
    """A ListVersionsResult as botocore parses it (the fields custodes reads); its keys URL-decoded where the
    server says it encoded them (``EncodingType`` url: botocore's rule; SeaweedFS sends them as they are)."""
    root = ElementTree.fromstring(body)
    encoded = any(n.tag.rsplit("}", 1)[-1] == "EncodingType" and n.text == "url" for n in root)
    key: Any = unquote_plus if encoded else str
    page: dict[str, Any] = {"Versions": [], "DeleteMarkers": [], "CommonPrefixes": [], "IsTruncated": False}
    for node in root:
        tag = node.tag.rsplit("}", 1)[-1]
        if tag in ("Version", "DeleteMarker"):
            entry: dict[str, Any] = {}
            for field in node:
                name, text = field.tag.rsplit("}", 1)[-1], field.text or ""
                if name == "Key":
                    entry["Key"] = key(text)
                elif name in ("VersionId", "ETag"):
                    entry[name] = text
                elif name == "IsLatest":
                    entry["IsLatest"] = text == "true"
                elif name == "LastModified":
                    entry["LastModified"] = _timestamp(text)
                elif name == "Size":
                    entry["Size"] = int(text)
            page["Versions" if tag == "Version" else "DeleteMarkers"].append(entry)
        elif tag == "CommonPrefixes":
            for field in node:
                if field.tag.rsplit("}", 1)[-1] == "Prefix":
                    page["CommonPrefixes"].append({"Prefix": key(field.text or "")})
        elif tag == "IsTruncated":
            page["IsTruncated"] = (node.text or "") == "true"
        elif tag in ("NextKeyMarker", "KeyMarker", "Prefix", "Delimiter"):
            page[tag] = key(node.text or "")
        elif tag in ("NextVersionIdMarker", "VersionIdMarker"):
            page[tag] = node.text or ""
    return page


def _client_error(operation: str, r: Any) -> ClientError:
    """The ClientError botocore raises for this answer: Code and Message from S3's XML error body, the status's
    number as the Code where there is none (a HEAD's, or an empty body), the headers in the metadata."""
    error: dict[str, str] = {"Code": str(r.status), "Message": r.reason or ""}
    body = r.read(_ERROR_BODY, decode_content=False) if r.status != 304 else b""
    if body.strip():
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            pass
        else:
            for field in ("Code", "Message"):
                found = root.find(field)
                if found is not None and found.text:
                    error[field] = found.text
    headers = {k.lower(): v for k, v in r.headers.items()}
    response: dict[str, Any] = {
        "Error": error,
        "ResponseMetadata": {"HTTPStatusCode": r.status, "HTTPHeaders": headers},
    }
    if headers.get("x-amz-delete-marker") == "true":
        response["DeleteMarker"] = True
    return ClientError(response, operation)
