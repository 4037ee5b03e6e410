"""What a bucket really guarantees, tried rather than read from its settings (``custodes storage check``).

Each probe writes small objects under ``<prefix>probes/<run>-*`` and says what the server did. The object locked
by the probe keeps a COMPLIANCE retention of :data:`custodes_s3.store.PROBE_RETENTION` (seconds): it cannot be
removed before that, so each check first deletes the probes of earlier checks whose lock has run out.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from custodes.storage import Guarantee, StoreError
from custodes_s3 import store as s3store

if TYPE_CHECKING:
    from custodes_s3.store import S3Store

__all__ = ["NAMES", "cannot_lock", "is_probe_key", "probe"]

#: Every guarantee probed, in the order reported.
NAMES = (
    "object lock enabled",
    "versioning enabled",
    "write-once",
    "checksums enforced",
    "retention enforced by the storage",
    "retention never shortened",
    "legal hold enforced by the storage",
    "retention mode",
    "legal hold kept from the archive's own identity",
)

_BODY = b"custodes storage probe\n"
_SHA256 = base64.b64encode(hashlib.sha256(_BODY).digest()).decode()
_WRONG = base64.b64encode(hashlib.sha256(b"not the probe\n").digest()).decode()


class _Probe:
    def __init__(self, store: S3Store) -> None:
        self.store, self.s3, self.bucket = store, store._s3, store.bucket
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.run = f"{store.prefix}probes/{stamp}-{os.urandom(4).hex()}"
        self.lifted: bool | None = None  # whether a legal hold could be taken off (_legal_hold)

    def call(self, name: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = getattr(self.s3, name)(Bucket=self.bucket, **kwargs)
        return result

    def put(self, key: str, **kwargs: Any) -> str | None:
        r = self.call("put_object", Key=key, Body=_BODY, ChecksumSHA256=_SHA256, **kwargs)
        return r.get("VersionId")

    def exists(self, key: str, version: str | None) -> bool:
        try:
            self.call("head_object", Key=key, **s3store._version(version))
        except ClientError as e:
            if s3store._missing(e) or s3store._status(e) == 405:
                return False
            raise
        return True

    def retained_until(self, key: str, version: str | None) -> datetime | None:
        try:
            r = self.call("get_object_retention", Key=key, **s3store._version(version))
        except ClientError:
            return None
        until: datetime | None = r.get("Retention", {}).get("RetainUntilDate")
        return until

    def delete(self, key: str, version: str | None) -> None:
        try:
            self.call("delete_object", Key=key, **s3store._version(version))
        except (ClientError, BotoCoreError):
            pass  # locked still, or already gone: a later check removes it


def _guard(name: str, step: Callable[[], Guarantee]) -> Guarantee:
    """A probe whose request failed in a way it did not foresee says so, and the others go on."""
    try:
        return step()
    except (ClientError, BotoCoreError) as e:
        return Guarantee(name, False, f"the probe could not be made: {s3store._reason(e)}")


def _lock_configuration(p: _Probe) -> Guarantee:
    name = "object lock enabled"
    try:
        config = p.call("get_object_lock_configuration").get("ObjectLockConfiguration", {})
    except ClientError as e:
        return Guarantee(name, False, f"the bucket has no Object Lock ({s3store._reason(e)}): nothing stops a delete")
    if config.get("ObjectLockEnabled") != "Enabled":
        return Guarantee(name, False, f"Object Lock is not enabled on the bucket ({config})")
    rule = config.get("Rule", {}).get("DefaultRetention")
    default = f"default retention {rule}" if rule else "no default retention: custodes sets each object's"
    return Guarantee(name, True, f"Object Lock enabled on {p.bucket} ({default})")


def _versioning(p: _Probe) -> Guarantee:
    status = p.call("get_bucket_versioning").get("Status", "never enabled")
    held = status == "Enabled"
    what = "a write or delete through another client adds a version, kept" if held else "an overwrite loses bytes"
    return Guarantee("versioning enabled", held, f"versioning {status}: {what}")


def _write_once(p: _Probe, key: str) -> tuple[Guarantee, str | None, bool]:
    """Create a probe, then create it again on the same condition: the second must be refused (412)."""
    name = "write-once"
    version = p.put(key, IfNoneMatch="*")
    try:
        p.put(key, IfNoneMatch="*")
    except ClientError as e:
        if s3store._status(e) == 412:
            return Guarantee(name, True, "a second create with If-None-Match: * was refused (412)"), version, True
        return (
            Guarantee(name, False, f"a second conditional create failed otherwise: {s3store._reason(e)}"),
            version,
            True,
        )
    return (
        Guarantee(name, False, "a second create with If-None-Match: * was accepted: keys can be replaced"),
        version,
        True,
    )


def _checksums(p: _Probe, key: str) -> Guarantee:
    name = "checksums enforced"
    try:
        p.call("put_object", Key=key, Body=_BODY, ChecksumSHA256=_WRONG, IfNoneMatch="*")
    except ClientError as e:
        if p.exists(key, None):
            return Guarantee(name, False, f"a wrong SHA-256 was refused ({s3store._reason(e)}) yet the object exists")
        return Guarantee(
            name, True, f"bytes sent with a wrong x-amz-checksum-sha256 were refused ({s3store._reason(e)})"
        )
    p.delete(key, None)
    return Guarantee(name, False, "bytes sent with a wrong x-amz-checksum-sha256 were stored")


def _retention(p: _Probe, key: str, version: str | None) -> list[Guarantee]:
    """Lock the write-once probe (COMPLIANCE), try to delete its version, then to shorten its retention."""
    delete, shorten = "retention enforced by the storage", "retention never shortened"
    until = datetime.now(UTC).replace(microsecond=0) + s3store.PROBE_RETENTION
    try:
        p.call(
            "put_object_retention",
            Key=key,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
            **s3store._version(version),
        )
    except ClientError as e:
        why = f"a COMPLIANCE retention could not be set ({s3store._reason(e)})"
        return [Guarantee(delete, False, why), Guarantee(shorten, False, why)]
    return [
        _guard(delete, lambda: _delete_refused(p, key, version)),
        _guard(shorten, lambda: _shorten(p, key, version, until)),
    ]


def _delete_refused(p: _Probe, key: str, version: str | None) -> Guarantee:
    name = "retention enforced by the storage"
    try:
        p.call("delete_object", Key=key, **s3store._version(version))
    except ClientError as e:
        if p.exists(key, version):
            return Guarantee(name, True, f"deleting a locked version was refused ({s3store._reason(e)})")
    if version is None or not p.exists(key, version):
        return Guarantee(name, False, "a version under COMPLIANCE retention was deleted")
    return Guarantee(name, True, "deleting a locked version was refused")


def _shorten(p: _Probe, key: str, version: str | None, until: datetime) -> Guarantee:
    name = "retention never shortened"
    try:
        p.call(
            "put_object_retention",
            Key=key,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until - timedelta(seconds=20)},
            **s3store._version(version),
        )
    except ClientError as e:
        now = p.retained_until(key, version)
        if now is not None and now >= until:
            return Guarantee(name, True, f"shortening a COMPLIANCE retention was refused ({s3store._reason(e)})")
        return Guarantee(name, False, f"shortening was refused ({s3store._reason(e)}), but the date reads {now}")
    return Guarantee(name, False, "a COMPLIANCE retention was shortened")


def _legal_hold(p: _Probe, key: str) -> Guarantee:
    """A probe under a legal hold alone (no retention): its delete must be refused; then released and removed."""
    name = "legal hold enforced by the storage"
    version = p.put(key, IfNoneMatch="*")
    try:
        p.call("put_object_legal_hold", Key=key, LegalHold={"Status": "ON"}, **s3store._version(version))
    except ClientError as e:
        p.delete(key, version)
        return Guarantee(name, False, f"a legal hold could not be set ({s3store._reason(e)})")
    try:
        try:
            p.call("delete_object", Key=key, **s3store._version(version))
        except ClientError as e:
            if p.exists(key, version):
                return Guarantee(
                    name, True, f"deleting a version under a legal hold was refused ({s3store._reason(e)})"
                )
        if version is not None and p.exists(key, version):
            return Guarantee(name, True, "deleting a version under a legal hold was refused")
        return Guarantee(name, False, "a version under a legal hold was deleted")
    finally:
        try:
            p.call("put_object_legal_hold", Key=key, LegalHold={"Status": "OFF"}, **s3store._version(version))
            p.lifted = True
        except (ClientError, BotoCoreError):
            p.lifted = False
        p.delete(key, version)


def _hold_lifted(p: _Probe) -> Guarantee:
    """Whether the archive's own identity could take the probe's legal hold off (S3's rule: whoever may set a
    hold may lift it, unless a policy denies ``s3:PutObjectLegalHold`` with ``s3:object-lock-legal-hold`` OFF)."""
    name = NAMES[8]
    if p.lifted is None:
        return Guarantee(name, False, "not probed: no probe object under a legal hold")
    if p.lifted:
        return Guarantee(
            name,
            False,
            "the archive's own credentials took a legal hold off: whoever holds them can lift a hold and then "
            "delete a held recording whose retention date has passed; deny this identity s3:PutObjectLegalHold "
            "with s3:object-lock-legal-hold=OFF (releases then need an identity of their own) and keep the "
            "retention dates, which no one can shorten in COMPLIANCE mode",
        )
    return Guarantee(name, True, "the archive's own credentials could not take a legal hold off")


def _mode(store: S3Store) -> Guarantee:
    if store.mode == "COMPLIANCE":
        return Guarantee("retention mode", True, "COMPLIANCE: no one, the bucket's owner included, can delete early")
    return Guarantee(
        "retention mode",
        False,
        "GOVERNANCE: an identity allowed s3:BypassGovernanceRetention can delete or shorten; COMPLIANCE cannot",
    )


#: A probe object's key below ``<prefix>probes/``: what a check wrote, and the only thing a later check deletes
#: (an archive whose prefix lies below this one's ``probes/`` must never lose a key to it).
_PROBE_KEY = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}-[a-z-]+$")


def is_probe_key(name: str) -> bool:
    """Whether ``name``, below ``<prefix>probes/``, is a probe object a check (or a first claim) writes."""
    return bool(_PROBE_KEY.match(name))


def _clear_earlier(p: _Probe) -> None:
    """Delete what earlier checks left under probes/ (their locks have run out, or the delete is refused and the
    probe waits for the next check): the keys a check writes, nothing else found there."""
    top = p.store.prefix + "probes/"
    try:
        for key, entries in p.store._versions(top, delimiter="/"):
            if not is_probe_key(key[len(top) :]):
                continue
            for entry in entries:
                p.delete(key, entry.get("VersionId"))
    except StoreError:
        pass  # a listing that fails leaves the old probes for the next check, nothing more


def cannot_lock(store: S3Store, try_retention: bool) -> str | None:
    """Why ``store``'s bucket cannot keep evidence locked (None: it can): not there, no Object Lock, or (with
    ``try_retention``, an archive's first claim of its prefix) a COMPLIANCE retention on a new probe object
    refused (a policy that denies this identity s3:PutObjectRetention). What ``storage check`` probes in full;
    this is what the backend refuses to store evidence without (:meth:`custodes_s3.store.S3Store.claim`)."""
    p = _Probe(store)
    try:
        p.s3.head_bucket(Bucket=store.bucket)
    except (ClientError, BotoCoreError) as e:
        # Not reached at all is no answer about Object Lock (a hostile review: wrong credentials and a dead
        # endpoint were both said as "the bucket cannot keep evidence locked", sending the user to the bucket).
        raise StoreError(
            f"{store.describe()}: the bucket cannot be reached ({s3store._reason(e)}): check the endpoint, that the "
            "bucket exists, and the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the [storage] "
            "profile) and what they are allowed"
        ) from None
    found = _guard(NAMES[0], lambda: _lock_configuration(p))
    if not found.held:
        return found.detail
    if not try_retention:
        return None
    key = f"{p.run}-claim"
    try:
        version = p.put(key, IfNoneMatch="*")
        until = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        p.call(
            "put_object_retention",
            Key=key,
            Retention={"Mode": store.mode, "RetainUntilDate": until},
            **s3store._version(version),
        )
    except (ClientError, BotoCoreError) as e:
        return f"a {store.mode} retention could not be set on a probe object ({s3store._reason(e)})"
    finally:
        _clear_earlier(p)  # this probe, once its two seconds are past (or at the next check)
    return None


def probe(store: S3Store) -> list[Guarantee]:
    p = _Probe(store)
    try:
        p.s3.head_bucket(Bucket=store.bucket)
    except (ClientError, BotoCoreError) as e:
        # Nothing written to a bucket that is not there: some servers (SeaweedFS) would make it on the first
        # PUT, without Object Lock, and the name could never be made right.
        return [Guarantee("bucket exists", False, f"{store.describe()}: {s3store._reason(e)}; nothing probed")]
    _clear_earlier(p)
    found = [_guard(NAMES[0], lambda: _lock_configuration(p)), _guard(NAMES[1], lambda: _versioning(p))]
    key = f"{p.run}-write-once"
    try:
        written, version, made = _write_once(p, key)
    except (ClientError, BotoCoreError) as e:
        written, version, made = Guarantee(NAMES[2], False, f"no probe object: {s3store._reason(e)}"), None, False
    found += [written, _guard(NAMES[3], lambda: _checksums(p, f"{p.run}-checksum"))]
    if made:
        try:
            found += _retention(p, key, version)
        except BotoCoreError as e:
            found += [Guarantee(n, False, f"the probe could not be made: {s3store._reason(e)}") for n in NAMES[4:6]]
        p.delete(key, version)  # refused while locked: removed by a later check
    else:
        found += [Guarantee(n, False, "no probe object to lock") for n in NAMES[4:6]]
    found += [_guard(NAMES[6], lambda: _legal_hold(p, f"{p.run}-hold")), _mode(store), _hold_lifted(p)]
    return found
