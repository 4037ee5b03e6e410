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
its process dropped the capability. The check and the reads are separate
steps: an entry swapped between them is read unchecked. Who can swap it is
bounded: only an account with write access to its folder (on a volume of
one's own, the caller); ``fs.protected_hardlinks`` (on by default) stops
the caller from linking in a file they could not read; a link put in place
of a checked file is not followed by ``scan_volume``; and the volume itself
must still be the folder the caller opened (device and inode, checked by
:class:`custodes.service.Request`). A folder swapped for a link after the
check is the one gap left: closing it needs the reads made relative to the
checked descriptors (``openat2`` with ``RESOLVE_BENEATH``), not paths.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

from custodes.drivers import _is_noise
from custodes.errors import CustodesError
from custodes.findings import shown_name
from custodes.identity import Caller, account_name

__all__ = ["FolderRightsError", "check_folder", "may"]

READ, SEARCH = 4, 1  # the rwx bits: what reading a file, and listing and passing a folder, need
_FILE, _FOLDER = READ, READ | SEARCH

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
    return "list and enter" if want & SEARCH else "read"


def check_folder(folder: str, given: str, caller: Caller) -> None:
    """Refuse (:class:`FolderRightsError`) unless ``caller`` could read everything in ``folder`` that custodes
    reads: every folder listed and entered, every regular file read, every link leading to such an entry
    inside ``folder``. ``given`` is the folder as the caller named it, for the message."""
    root = os.path.realpath(folder)
    links: list[str] = []
    _entry(folder, folder, given, caller, links, follow=True)  # the caller opened it through any link
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
            if _is_noise(entry.name):
                continue  # never opened: scan_volume lists it as skipped, by name only
            if _entry(entry.path, folder, given, caller, links):
                subfolders.append(entry.path)
        stack.extend(reversed(subfolders))
    for link in links:
        target = os.path.realpath(link)
        inside = os.path.relpath(target, root)
        if target != root and (inside.startswith(os.pardir) or any(_is_noise(p) for p in inside.split(os.sep))):
            why = f"a symbolic link to {shown_name(os.readlink(link))}, outside what the service checked"
            raise _refusal(link, folder, given, why)


def _entry(path: str, folder: str, given: str, caller: Caller, links: list[str], follow: bool = False) -> bool:
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
    return stat.S_ISDIR(st.st_mode)


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
