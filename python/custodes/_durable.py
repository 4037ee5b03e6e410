"""Durable writes: every file and folder the archive writes reaches the storage before it is relied on.

One home for the fsync rules, shared by the store, the ledger's checkpoint files, ingest, export and
access: a file is written under a temporary name, flushed, then linked or renamed into place and its
folder flushed, so a crash leaves either the old state or the new one, never half a file. Each
storage step goes through the fault injector (``_faults.storage_op``) so tests can fail it."""

from __future__ import annotations

import errno
import functools
import os
import stat
from collections.abc import Callable, Container
from contextlib import suppress
from pathlib import Path

from custodes._faults import storage_op

__all__ = [
    "NEARLY_FULL",
    "ascii_digits",
    "disk_full",
    "disk_full_line",
    "drop_cached_pages",
    "durable_temp",
    "fsync_dir",
    "fsync_file",
    "left_by_dead_process",
    "process_alive",
    "process_tag",
    "sweep_dead_temps",
    "replace_file",
    "sync_together",
    "write_new_file",
    "write_once",
]


def read_head(path: Path, limit: int, *, follow: bool = True) -> bytes:
    """At most the first ``limit`` bytes of a regular file, never more in memory whatever its size; a FIFO would
    hang the read and a device never ends, so anything but a regular file is refused before it is read
    (ValueError; a folder IsADirectoryError, as reading its path would say). A link is followed only with
    ``follow``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        raise ValueError("not a regular file (a FIFO or a device)")
    with os.fdopen(fd, "rb") as f:
        return f.read(limit)


def read_small(path: Path, limit: int, *, follow: bool = False) -> bytes:
    """The bytes of a small file the archive keeps (a key, a checkpoint note, an owner file), whole: a regular
    file of at most ``limit`` bytes (:func:`read_head`), a link not followed unless ``follow`` (a key the policy
    places elsewhere may be one). Raises OSError, or ValueError saying what the file is instead."""
    data = read_head(path, limit + 1, follow=follow)
    if len(data) > limit:
        raise ValueError(f"over {limit} bytes")
    return data


#: Below this much free space (for this account) a disk counts as full: an I/O error on it is a full disk's.
NEARLY_FULL = 1 << 20


def disk_full(path: str | os.PathLike[str]) -> bool:
    """The disk holding ``path`` has under :data:`NEARLY_FULL` free for this account (one that cannot be asked is
    not said to be full)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < NEARLY_FULL


def disk_full_line(where: str | os.PathLike[str]) -> str:
    """How every command says a disk is full, naming ``where`` (what follows it is the caller's to add)."""
    return f"the disk is full ({os.fspath(where)}): free space on it, then run the command again"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        storage_op("fsync", path)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path, *, drop_cache: bool = False) -> None:
    """Flush a file's bytes to the storage (the one fsync of a file the archive writes). With
    ``drop_cache``, its cached pages are dropped after, so the next read comes from the storage itself."""
    fd = os.open(path, os.O_RDONLY)
    try:
        storage_op("fsync", path)
        os.fsync(fd)
        if drop_cache:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def drop_cached_pages(path: Path) -> None:
    """Drop a flushed file's pages from the page cache, so the next read of it comes from the storage itself."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _syncfs_reports_errors() -> bool:
    """syncfs(2) reports a write-back error of any file on the file system since Linux 5.8; before, it
    flushed but said nothing, so the files must be fsynced one by one to learn of an error."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


_SYNCFS = _syncfs_reports_errors()


def sync_together(folder: Path, files: list[Path]) -> None:
    """Make ``files`` (written or linked under ``folder``) and ``folder``'s own entries durable together.

    Each fsync on this kind of disk costs a cache flush of the device (about 1 ms here), so a group of many
    small files fsynced one by one is bound by flushes, not by bytes. One ``syncfs`` of the file system
    holding ``folder`` writes back every dirty page and inode and commits the journal once, and says if any
    write-back failed; the caller then treats every file of the group as failed (it cannot tell which). Where
    syncfs does not report errors (not Linux, or Linux before 5.8), each file and the folder are fsynced."""
    storage_op("fsync", folder)
    if not _SYNCFS:
        for path in files:
            fsync_file(path)
        fsync_dir(folder)
        return
    import ctypes  # only here: most commands never sync a group

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fspath(folder))
    finally:
        os.close(fd)


def process_alive(pid: int, since_ns: int | None = None) -> bool:
    """Whether process ``pid`` still runs (another user's counts as live). ``since_ns``: when it last wrote a
    file it left (the file's mtime); one written before the system's latest boot is no running process's,
    whatever runs under its pid now. For names made by an older custodes (``<pid>-...``); a temp named by
    :func:`process_tag` is judged exactly by :func:`left_by_dead_process`."""
    if since_ns is not None and since_ns < _boot_ns() - _BOOT_SLACK_NS:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # (no pid is that large)
        return False
    except PermissionError:
        return True
    return True


#: The boot time in /proc is whole seconds, and a clock set at boot may move it a little.
_BOOT_SLACK_NS = 60 * 10**9


@functools.cache
def _boot_ns() -> int:
    """When the system last booted, in ns since 1970 (``/proc/stat``); 0 where that cannot be read."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return int(line.split()[1]) * 10**9
    except (OSError, ValueError):
        pass
    return 0


@functools.cache
def _boot_id() -> str:
    """This boot's id (``/proc/sys/kernel/random/boot_id``), its first 8 hex digits; "" where there is none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return ""


def _process(pid: int) -> tuple[bytes, int] | None:
    """Process ``pid``'s state and start, in clock ticks since the boot (``/proc/<pid>/stat``, fields 3 and 22):
    with the pid, one process of this boot, whatever the clock did since. None where it cannot be read (gone, or
    hidden by ``hidepid``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()  # after the name, which may hold spaces
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


@functools.cache
def _namespaces() -> str:
    """This process's pid and time namespaces (the inodes of ``/proc/self/ns/pid`` and ``ns/time``, joined by
    "_"): a pid is one process within its pid namespace, and /proc gives a start relative to the reader's time
    namespace (a hostile review: an ingest under ``unshare -T`` had its copy swept as another process's). ""
    where the pid namespace cannot be read; the time one is left out where the kernel has none."""
    found = []
    for kind in ("pid", "time"):
        try:
            found.append(str(os.stat(f"/proc/self/ns/{kind}").st_ino))
        except OSError:
            if kind == "pid":
                return ""
    return "_".join(found)


def process_tag(pid: int | None = None) -> str:
    """How a process (this one by default) names what it leaves in a shared folder:
    ``<pid>.<start>.<boot>.<namespaces>``, its pid, its start in ticks since the boot, the boot's id and the
    namespaces its pid and start are of (this process's: :func:`_namespaces`); just ``<pid>`` where /proc says
    none of them. The pid alone was judged by the files' times against the boot, and missed (session 13's
    note): a clock stepped forward after the boot, as on a station without a clock battery once it reaches NTP,
    made a live ingest's copies look older than the boot, so another ingest's sweep would remove them; a
    restarted container's processes reuse pids within one boot. The namespaces, since a hostile review: an
    ingest in a container (its pid 1) had its copy in flight swept by one on the host, whose pid 1 is another
    process."""
    global _own_tag
    if pid is not None:
        return _tag_of(pid)
    if _own_tag[0] != os.getpid():  # read once a process (a fork is a process of its own)
        _own_tag = (os.getpid(), _tag_of(os.getpid()))
    return _own_tag[1]


_own_tag = (0, "")


def _tag_of(pid: int) -> str:
    running, boot, space = _process(pid), _boot_id(), _namespaces()
    return f"{pid}.{running[1]}.{boot}.{space}" if running is not None and boot and space else str(pid)


#: The initial pid namespace's inode (the kernel's PROC_PID_INIT_INO): a process in it sees every process of the
#: machine in /proc, those of every container included.
_INIT_PID_NAMESPACE = 0xEFFFFFFC


def _live_pid_namespaces() -> frozenset[str] | None:
    """The pid namespaces some process of the machine is in (inodes, as :func:`process_tag` writes them), or None
    where this process cannot see every process's: only root in the initial pid namespace can (elsewhere /proc
    shows one namespace's processes, or hides other users' with ``hidepid``, or refuses their ``ns`` links)."""
    try:
        if os.geteuid() != 0 or os.stat("/proc/self/ns/pid").st_ino != _INIT_PID_NAMESPACE:
            return None
        pids = [p for p in os.listdir("/proc") if ascii_digits(p)]
    except OSError:
        return None
    found = {str(_INIT_PID_NAMESPACE)}
    for pid in pids:
        try:
            found.add(str(os.stat(f"/proc/{pid}/ns/pid").st_ino))
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended since the listing
        except OSError:
            # Refused even to root (a sandbox's own pid 1 here): its status, readable by all, says whether it is
            # in a namespace below this one (a pid in each); one that is, unread, leaves the others unknowable.
            if not _only_in_this_namespace(pid):
                return None
    return frozenset(found)


def _only_in_this_namespace(pid: str) -> bool:
    """Whether /proc/PID/status gives the process one pid only: it is in the namespace of this /proc, no other."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            spaces = [line.split()[1:] for line in f if line.startswith(b"NSpid:")]
    except FileNotFoundError:
        return True  # ended since: in no namespace now
    except OSError:
        return False
    return len(spaces) == 1 and len(spaces[0]) == 1


def left_by_dead_process(
    name: str, written_ns: int, namespaces: Callable[[], frozenset[str] | None] = _live_pid_namespaces
) -> bool:
    """Whether the entry ``name`` (``<tag>-...``, :func:`process_tag`) was left by a process that no longer runs:
    a dead one's entries are leftovers to clean, a live one's (this one's, another user's) work in flight. Anything
    else named is no temp of custodes' and never counts as left (False). A name of an older custodes
    (``<pid>-...``) is judged by its time ``written_ns`` against the boot (:func:`process_alive`).

    One of another pid namespace (a container's) is dead once no process of the machine is in that namespace, as
    ``namespaces`` (:func:`_live_pid_namespaces`, asked only then; read after the entry was listed, so a live
    writer's namespace is in it) says; where it cannot say, or the namespace lives on, nothing here tells whether
    its pid runs, and the entry is kept (session 14's note: a killed ingest's complete copies stayed in tmp/ until
    a reboot, and the host's re-run failed their files)."""
    tag = name.partition("-")[0]
    if "." not in tag:
        pid = _pid(tag)
        return pid is not None and pid != os.getpid() and not process_alive(pid, written_ns)
    parts = tag.split(".")
    pid = _pid(parts[0])
    if pid is None or len(parts) != 4 or not ascii_digits(parts[1]) or not parts[2]:
        return False  # not a tag of ours (a hostile review: '²' passed str.isdigit, and int refused it)
    started, boot, space = int(parts[1]), parts[2], parts[3]
    if boot != _boot_id():
        return True  # written in another boot: no process of that boot runs now
    if space != _namespaces():
        # Another namespace's pid or start: dead with its pid namespace; a time namespace of its own (the same pid
        # namespace) gives a start this process cannot compare, and is kept.
        pid_space = space.partition("_")[0]
        if pid_space == _namespaces().partition("_")[0]:
            return False
        live = namespaces()
        return live is not None and pid_space not in live
    running = _process(pid)
    if running is None:
        # Gone, or /proc hides it (hidepid): the signal check tells them apart; one we may not signal is live.
        return not process_alive(pid)
    state, now = running
    # Another process under a reused pid, or this one ended, not yet reaped by its parent (a hostile review: a
    # zombie's complete copies were called "not in the store").
    return now != started or state in (b"Z", b"X")


def ascii_digits(text: str) -> bool:
    """Whether ``text`` is a number ``int`` reads: ASCII digits (``str.isdigit`` takes '²' and '٣', which ``int``
    refuses: a name made so stopped ingest, repair, the service and export with a traceback)."""
    return text.isascii() and text.isdigit()


def _pid(text: str) -> int | None:
    """``text`` as a pid; one too large for any is a process that does not run (os.kill's OverflowError)."""
    return int(text) if ascii_digits(text) and int(text) > 0 else None


_TREE = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: Path) -> None:
    """``shutil.rmtree`` without its recursion: one descriptor held, the names on the way down in a list, so a
    folder nested deeper than Python's stack (or than a path may be spelled) goes too (a hostile review: a dead
    process's spool folder nested 1,200 deep stopped every ingest with a RecursionError). Links are removed,
    never followed."""
    fd = os.open(path, _TREE)
    names: list[str] = []
    try:
        while True:
            below = None
            with os.scandir(fd) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        below = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if below is not None:  # down into it; this folder is listed again once it is gone
                child = os.open(below, _TREE, dir_fd=fd)
                os.close(fd)
                fd = child
                names.append(below)
                continue
            if not names:
                break
            parent = os.open("..", _TREE, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)


def dead_temps(folder: Path) -> list[os.DirEntry[str]]:
    """What dead processes left in ``folder``: entries named ``<pid>-...`` whose pid is gone (half-written copies,
    a killed ingest's complete ones, a verify's replay folder); a live process's entries are work in flight."""
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except FileNotFoundError:
        return []
    dead = []
    namespaces = functools.cache(_live_pid_namespaces)  # read once, after the listing, and only if a name needs it
    for entry in entries:
        try:
            written = entry.stat(follow_symlinks=False).st_mtime_ns
        except OSError:
            continue  # gone meanwhile
        if left_by_dead_process(entry.name, written, namespaces):
            dead.append(entry)
    return dead


def sweep_dead_temps(folder: Path, keep: Container[str] = ()) -> None:
    """Remove what dead processes left in ``folder`` (:func:`dead_temps`) but the paths in ``keep``. Run only by
    the process that writes the folder, on the archive's own machine: a worker elsewhere sees other pids."""
    for entry in dead_temps(folder):
        if entry.path in keep:
            continue
        if entry.is_dir(follow_symlinks=False):
            with suppress(OSError):
                remove_tree(Path(entry.path))
        else:
            Path(entry.path).unlink(missing_ok=True)


def durable_temp(path: Path, text: str, folder: Path | None = None, mode: int = 0o600) -> Path:
    """``text`` written and fsynced to a temp file beside ``path`` (or in ``folder``,
    named ``<process tag>-...`` as the spool's sweep expects: :func:`process_tag`). On an error
    the temp is removed: a failed write leaves nothing behind."""
    tmp = (
        folder / f"{process_tag()}-{os.urandom(6).hex()}-{path.name}"
        if folder is not None
        else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    )
    try:
        # 0600 by default whatever the umask: an archive's own files (checkpoints, the policy, the verifier key).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        os.fchmod(fd, mode)  # the umask may have taken bits a published file needs
        with open(fd, "w", encoding="utf-8") as f:
            storage_op("write", tmp)
            f.write(text)
            f.flush()
            storage_op("fsync", tmp)
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_once(
    path: Path,
    text: str,
    folder: Path | None = None,
    mode: int = 0o600,
    before_link: Callable[[], object] | None = None,
) -> None:
    """Create ``path`` atomically (``mode``: 0600 unless said); an existing file is never replaced. One holding
    ``text`` already is this write done before (a crash, a restore); one holding anything else is an OSError
    (EEXIST) naming it: a checkpoint's name taken by another file (tampering) was passed over in silence, the
    act reported done without its file (a hostile review). ``before_link``: called once the content is durable,
    just before it is linked in (not when ``path`` exists)."""
    if os.path.lexists(path):
        _same_text_there(path, text)
        return
    tmp = durable_temp(path, text, folder, mode)
    try:
        storage_op("write", path)
        if before_link is not None:
            before_link()
        os.link(tmp, path)
    except FileExistsError:
        _same_text_there(path, text)
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)


def _same_text_there(path: Path, text: str) -> None:
    try:
        there = read_small(path, len(text.encode()) + 1)
    except ValueError:  # a folder, a FIFO, a file too long: not this text either
        there = None
    if there != text.encode():
        raise OSError(errno.EEXIST, "another file is already there under this name, left as it is", path)


def replace_file(path: Path, text: str, folder: Path | None = None) -> None:
    """Replace ``path`` atomically (the latest checkpoint, the policy at init)."""
    tmp = durable_temp(path, text, folder)
    try:
        storage_op("write", path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``data`` and ``mode``, flushed; never replaces a file already there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # made here and not whole (a full disk): no empty key file is left (a hostile review)
        path.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def file_kind(mode: int) -> str:
    """What a file of ``mode`` is, for messages: "a FIFO", "a folder", "a socket", "a character device", "a block
    device", "a link", else "not a regular file"."""
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a link"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def protection_problems(
    st: os.stat_result,
    owner: int,
    secret: bool = False,
    whose: str = "the archive's",
    path: str | os.PathLike[str] | None = None,
) -> list[str]:
    """The one rule for what only one account may change: the archive's own entries (verify's `unprotected`,
    init's --signing-key) and the folders above a verifier's kept replays (catalog.replay_cache). Each ``owner``'s
    (``whose``, in words) or root's, and writable by no one else unless a sticky folder (as /tmp: only an entry's
    owner may replace it there); a ``secret`` (the signing key) readable by no one else either. What is wrong,
    said in words; [] when nothing."""
    wrong = []
    if st.st_uid not in (owner, 0):
        wrong.append(f"owned by account {st.st_uid}, not {whose} ({owner})")
    sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if st.st_mode & (0o077 if secret else 0o022) and not sticky:
        wrong.append(
            f"mode {stat.S_IMODE(st.st_mode):04o}: {'readable or writable' if secret else 'writable'} by others"
            + (" (through a POSIX ACL: `getfacl` names whom)" if path is not None and _has_acl(path) else "")
        )
    return wrong


def key_places(key: Path) -> list[tuple[Path, bool]]:
    """The places that decide who may read or replace the signing key at ``key``, each with whether it is the
    secret itself: the key (a link followed), the folder that holds its name and every folder above it, and, for
    a link, the folder of the file it names and those above it (a hostile review: a key kept in a 0777 folder,
    or reached through a link into one, signed on while anyone could delete or swap it). Judged by
    :func:`protection_problems` wherever the key is used."""
    folders = [Path(os.path.abspath(key.parent))]
    with suppress(OSError, RuntimeError):  # (a folder shut to this account hides whether it is a link: verify,
        if key.is_symlink():  # which reads no key, still runs there)
            target = key.resolve(strict=True)
            if target.parent != folders[0].resolve():
                folders.append(target.parent)
    # Every folder above too: whoever may write one may rename the folder below it away and put their own there
    # (a second review: a key in a 0700 folder inside a 0777 one was taken away by another account).
    places = [(key, True)]
    for folder in folders:
        places += [(f, False) for f in (folder, *folder.parents) if (f, False) not in places]
    return places


def key_exposure(key: Path, owner: int) -> tuple[Path, bool, list[str]] | None:
    """The first of :func:`key_places` another account than ``owner`` (or root) could read (the key) or write,
    whether it is the key itself, and what is wrong with it; None when none is. Places that cannot be seen (not
    there yet, a folder shut) are left to the step that reads or makes the key. The one judgement init, a
    proposed policy and every signing ask."""
    for place, secret in key_places(key):
        try:
            wrong = protection_problems(os.stat(place), owner, secret, path=place)
        except OSError:
            continue
        if wrong:
            return place, secret, wrong
    return None


def _has_acl(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has a POSIX access ACL: its group bits are then the ACL's mask, and an entry of the ACL,
    not the group, is who may write (a hostile review: only "mode 0775" was said)."""
    try:
        return "system.posix_acl_access" in os.listxattr(path)
    except OSError:
        return False


def problems_above(top: Path, owner: int, whose: str = "the archive's") -> tuple[Path, list[str]] | None:
    """The first folder from ``top`` up to ``/`` (as the path resolves) that :func:`protection_problems` finds
    wrong, and what is: another account that may write a folder above a place (not sticky) may rename the place
    away and put its own in its stead. None when every one is sound; a folder not there (yet) is passed over."""
    here = Path(os.path.realpath(top))
    while True:
        with suppress(FileNotFoundError):
            wrong = protection_problems(os.stat(here), owner, whose=whose, path=here)
            if wrong:
                return here, wrong
        if here.parent == here:
            return None
        here = here.parent
