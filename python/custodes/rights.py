"""What the archive service may read of a folder a caller hands it: only what the caller could read.

A device volume (``ingest``) or a witness folder (``verify --witness``) named
through the service is walked by the service, with the service's account.
The client's descriptor proves the caller could open the folder itself, not
what is in it: a clip 0600 of the service's account, or of another officer,
or a subfolder 0700 of someone else, would be read for the caller by the one
account that reads everything (a confused deputy).

**The approach.** Linux gives an unprivileged process no "open this as uid
X" (only root may change its ids, and the service is not root), so the
service checks first and reads after: :func:`check_folder` walks the folder
(without following a link) and holds every entry to the kernel's own
discretionary access check, evaluated for the caller (:func:`may`): the
owner's bits when the caller owns it, else the group's bits when the file's
group is one the caller's process held, else the others' bits; uid 0 reads
everything; a POSIX ACL is evaluated as the kernel evaluates it
(``posix_acl_permission``), and an ACL of any other kind (NFSv4) is
refused, never guessed. Every folder needs read and search, every file read.
The groups are the ones the caller's process held when it connected
(``SO_PEERCRED``, ``SO_PEERGROUPS``; :func:`custodes.identity.peer_caller`),
as the kernel would use them, not the group database.

**Refused, not left out.** The first entry the caller cannot read refuses
the whole request (exit 2, one line naming it and why) before any driver
runs. Leaving such files out with a finding would need every driver,
third-party ones included, to honour a list of names it must not open
(drivers open files they know by name: ``MISC/version.txt``, a device log),
which the service cannot enforce; a refusal it can, in this one place.
And for evidence a refusal loses nothing: the card is untouched, nothing
enters the archive, and the custodian learns the one thing to fix (ask the
file's owner for read access, or ingest as that owner) before a partial
copy of the device is recorded as if it were the device. The service cannot
tell a device log from footage before it reads it, so a single unreadable
log refuses too. This is stricter than the embedded CLI, where a file the
archive's owner cannot read is an ``ingest_failed`` finding and the rest is
ingested: there the kernel itself stops every read, so nothing is read for
anyone who could not read it.

**Links.** The walk follows no link, and neither does ``scan_volume``; but a
driver opening a known name (``MISC/version.txt``) follows a link on the
way. So a link must resolve inside the folder, into entries the walk checks
(not into skipped file-system noise); one that leads out of it refuses the
request: a card's own file system (FAT, exFAT) has no links at all.

**Limits.** Only discretionary access is emulated: SELinux or AppArmor
rules that would stop the caller are not (they stop the service only as far
as its own labels say), nor capabilities of a caller other than root
(``CAP_DAC_READ_SEARCH``: not credited, so such a caller is refused more,
never less); a root caller is credited with reading everything even when
its process dropped the capability.

**The race.** The check and the reads are separate steps, and the command
reads by name: an entry swapped between them would be read unchecked. Who
can swap it is bounded: only an account with write access to a folder of the
volume (on a card of the caller's own, the caller); ``fs.protected_hardlinks``
(on by default) stops anyone from linking in a file they cannot read; the
volume itself must still be the folder the caller opened (device and inode,
:meth:`custodes.service.Request.input_path`). What is left, someone replacing
a checked file or folder by a link to what only the service reads, is closed
where bytes enter the archive: ingest copies each file through
:func:`as_checked`, which opens it and copies it only if it is one of the
very files (device and inode) the check approved. A driver's reads of
metadata (a device's identity file, container times) and the reads of a
witness folder are not held to it: those could still show, between the
check and the read, what a swapped name leads to; closing that needs every
read relative to the descriptors the check opened (``openat2`` with
``RESOLVE_BENEATH``).
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Collection, Iterator
from contextlib import contextmanager

from custodes.defaults import NOISE
from custodes.errors import CustodesError
from custodes.findings import shown_name
from custodes.identity import Caller, account_name

__all__ = ["FolderRightsError", "as_checked", "check_folder", "check_writable", "may"]

READ, WRITE, SEARCH = 4, 2, 1  # the rwx bits: what reading a file, writing in and passing a folder need
_FILE, _FOLDER, _WRITABLE = READ, READ | SEARCH, WRITE | SEARCH

ACL_ACCESS = "system.posix_acl_access"
#: ACLs the kernel enforces that this module does not evaluate: an entry carrying one is refused.
_FOREIGN_ACLS = ("system.nfs4_acl", "system.richacl")
# <linux/posix_acl_xattr.h>: a little-endian u32 version (2), then entries of u16 tag, u16 perm, u32 id.
_ACL_HEADER, _ACL_ENTRY = struct.Struct("<I"), struct.Struct("<HHI")
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


class FolderRightsError(CustodesError):
    """A folder handed to the service holds something its caller could not read."""

    kind = "caller_cannot_read"


def may(st: os.stat_result, acl: bytes | None, caller: Caller, want: int) -> str | None:
    """None when ``caller`` may do ``want`` (rwx bits) to the entry with stat ``st`` and access ACL ``acl``
    (the ``system.posix_acl_access`` value, or None), as the kernel decides it; else why not."""
    if caller.uid == 0:
        return None  # CAP_DAC_OVERRIDE
    if caller.uid is None:
        return "the service does not know who you are"
    if acl is not None:
        return _acl_may(_acl_entries(acl), st, caller, want)
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == caller.uid:
        bits, whose = mode >> 6, "owner"
    elif st.st_gid in caller.groups:
        bits, whose = mode >> 3, "group"
    else:
        bits, whose = mode, "others"
    if bits & want == want:
        return None
    return f"{_owned(st)}, mode {mode:04o}: its {whose} bits do not let you {_verb(want)} it"


def _acl_entries(raw: bytes) -> list[tuple[int, int, int]]:
    body = len(raw) - _ACL_HEADER.size
    if body < 0 or body % _ACL_ENTRY.size or _ACL_HEADER.unpack_from(raw)[0] != _ACL_VERSION:
        return []  # refused below: an ACL that cannot be read is never guessed at
    return [e for e in _ACL_ENTRY.iter_unpack(raw[_ACL_HEADER.size :])]


def _acl_may(entries: list[tuple[int, int, int]], st: os.stat_result, caller: Caller, want: int) -> str | None:
    """fs/posix_acl.c posix_acl_permission(): the first entry that names the caller decides, a named user's or
    any group's entry limited by the mask; a matching group that does not grant ``want`` denies."""
    tags = [tag for tag, _perm, _id in entries]
    if not entries or {_USER_OBJ, _GROUP_OBJ, _OTHER} - set(tags):
        return f"{_owned(st)}: it carries a POSIX ACL the service cannot read, so it does not guess"
    mask = next((perm for tag, perm, _id in entries if tag == _MASK), 7)
    denied = f"{_owned(st)}: its POSIX ACL does not let you {_verb(want)} it"
    group_matched = False
    for tag, perm, ident in entries:
        if tag == _USER_OBJ and st.st_uid == caller.uid:
            return None if perm & want == want else denied
        if tag == _USER and ident == caller.uid:
            return None if perm & mask & want == want else denied
        if tag in (_GROUP_OBJ, _GROUP) and (st.st_gid if tag == _GROUP_OBJ else ident) in caller.groups:
            group_matched = True
            if perm & mask & want == want:
                return None
        if tag == _OTHER:
            return None if not group_matched and perm & want == want else denied
    return denied


def _owned(st: os.stat_result) -> str:
    return f"owner {account_name(st.st_uid)}"


def _verb(want: int) -> str:
    if want & WRITE:
        return "create files in"
    return "list and enter" if want & SEARCH else "read"


def check_writable(folder: str, given: str, caller: Caller) -> None:
    """Refuse (:class:`FolderRightsError`) unless ``caller`` could create files in ``folder`` themselves: the
    service writes there for them (``ledger publish``), and must not write where only its own account may."""
    try:
        st = os.stat(folder)
    except OSError as e:
        raise _refusal(folder, folder, given, f"the archive service cannot see it ({e.strerror})") from None
    why = may(st, _access_acl(folder, folder, given, True), caller, _WRITABLE)
    if why is not None:
        raise FolderRightsError(
            f"{shown_name(given)}: you ({caller.account}) cannot {_verb(_WRITABLE)} it: {why}; the archive "
            "service writes in a folder only as far as you could yourself"
        )


def check_folder(folder: str, given: str, caller: Caller) -> frozenset[tuple[int, int]]:
    """Refuse (:class:`FolderRightsError`) unless ``caller`` could read everything in ``folder`` that custodes
    reads: every folder listed and entered, every regular file read, every link leading to such an entry
    inside ``folder``. ``given`` is the folder as the caller named it, for the message. Returns the regular
    files checked, as (device, inode): what :func:`as_checked` lets a copy read."""
    try:
        root = os.path.realpath(folder, strict=True)
    except OSError as e:  # a link swapped in or out while it is looked at (readlink on what is no longer one)
        raise _refusal(folder, folder, given, f"it changed while it was checked ({e.strerror})") from None
    links: list[str] = []
    files: set[tuple[int, int]] = set()
    _entry(folder, folder, given, caller, links, files, follow=True)  # the caller opened it through any link
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as e:
            raise _refusal(current, folder, given, f"the archive service cannot list it ({e.strerror})") from None
        subfolders = []
        for entry in entries:
            if entry.name in NOISE:
                continue  # a system folder, never opened: scan_volume lists it as skipped, by name only
            if _entry(entry.path, folder, given, caller, links, files):
                subfolders.append(entry.path)
        stack.extend(reversed(subfolders))
    for link in links:
        try:
            target = os.path.realpath(link, strict=True)
        except OSError as e:  # dangling, a loop, or changed while it is looked at: nothing to read there
            raise _refusal(link, folder, given, f"a symbolic link that leads nowhere readable ({e.strerror})") from None
        inside = os.path.relpath(target, root)
        outside = inside == os.pardir or inside.startswith(os.pardir + os.sep)
        if target != root and (outside or any(p in NOISE for p in inside.split(os.sep))):
            why = f"a symbolic link to {shown_name(os.readlink(link))}, outside what the service checked"
            raise _refusal(link, folder, given, why)
    return frozenset(files)


def _entry(
    path: str,
    folder: str,
    given: str,
    caller: Caller,
    links: list[str],
    files: set[tuple[int, int]],
    follow: bool = False,
) -> bool:
    """Check one entry; True when it is a folder to walk into."""
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError as e:
        raise _refusal(path, folder, given, f"the archive service cannot see it ({e.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        links.append(path)
        return False
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return False  # a FIFO, socket or device is a finding of scan_volume, never opened
    want = _FOLDER if stat.S_ISDIR(st.st_mode) else _FILE
    why = may(st, _access_acl(path, folder, given, follow), caller, want)
    if why is not None:
        raise _refusal(path, folder, given, f"you ({caller.account}) cannot {_verb(want)} it: {why}")
    if stat.S_ISREG(st.st_mode):
        files.add((st.st_dev, st.st_ino))
    return stat.S_ISDIR(st.st_mode)


@contextmanager
def as_checked(
    path: str,
    checked: Collection[tuple[int, int]] | None,
    what: str = "the file the archive service checked you could read",
) -> Iterator[str]:
    """The path to copy ``path`` from: ``path`` itself when nothing was checked, else the descriptor of the very
    file :func:`check_folder` approved, or ingest's scan found (``what`` says which, for the refusal), as
    ``/proc/self/fd/N``, opened first and held against its (device, inode): whatever was put in its place or on
    the way to it since (a link to a file of the service's, or to any file root can read) is refused, not
    copied."""
    if checked is None:
        yield path
        return
    try:  # O_NONBLOCK: a FIFO put there must not block the service
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise FolderRightsError(f"{shown_name(path)}: cannot open it ({e.strerror}); not copied") from None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) not in checked:
            raise FolderRightsError(f"{shown_name(path)}: not {what} (it changed since); not copied")
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _access_acl(path: str, folder: str, given: str, follow: bool) -> bytes | None:
    try:
        names = os.listxattr(path, follow_symlinks=follow)
        foreign = next((n for n in _FOREIGN_ACLS if n in names), None)
        if foreign is not None:
            raise _refusal(path, folder, given, f"it carries an ACL ({foreign}) the service does not evaluate")
        return os.getxattr(path, ACL_ACCESS, follow_symlinks=follow) if ACL_ACCESS in names else None
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.ENODATA):
            return None  # a file system without extended attributes has no ACLs
        raise _refusal(path, folder, given, f"the archive service cannot read its ACL ({e.strerror})") from None


def _refusal(path: str, folder: str, given: str, why: str) -> FolderRightsError:
    rel = os.path.relpath(path, folder)
    shown = given if rel == os.curdir else os.path.join(given, rel)
    return FolderRightsError(
        f"{shown_name(shown)}: {why}; the archive service reads a folder only as far as you could read it "
        "yourself: make it readable to you, or take it out of the folder, then run the command again"
    )
