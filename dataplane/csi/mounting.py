"""Mounts, the Linux way: ``mount(2)`` and ``umount2(2)`` through libc, the mount table from
``/proc/self/mountinfo``. Nothing here knows about DataSets.

A read-only bind mount is two calls (``MS_BIND``, then a remount with ``MS_RDONLY``), as
``mount --bind -o ro`` does. Unmounting a whole volume takes every mount at or under its target,
deepest first; a FUSE mount whose daemon died (``ENOTCONN``) is detached (``MNT_DETACH``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class MountError(OSError):
    """A mount or unmount the kernel refused (``errno`` set)."""


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise MountError(code, f"{what}: {os.strerror(code)}")


def bind_readonly(source: str | Path, target: str | Path) -> None:
    """Bind ``source`` (file or folder) onto ``target`` read-only, nosuid, nodev."""
    src, dst = os.fsencode(str(source)), os.fsencode(str(target))
    _check(_libc.mount(src, dst, None, MS_BIND, None), f"bind {source} on {target}")
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
    try:
        _check(_libc.mount(None, dst, None, flags, None), f"remount {target} read-only")
    except MountError:
        unmount(target)
        raise


def can_mount() -> str:
    """'' when this process may mount (a read-only bind of a temporary folder onto itself works),
    else why not."""
    import tempfile

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting needs root (CAP_SYS_ADMIN)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    with tempfile.TemporaryDirectory(prefix="kbl-can-mount-") as folder:
        try:
            bind_readonly(folder, folder)
        except OSError as exc:
            return f"mount(2) is refused here: {exc}"
        unmount(folder)
    return ""


def unmount(target: str | Path, *, detach: bool = False) -> None:
    """Unmount ``target``; ``detach`` (``MNT_DETACH``) when it is busy or its FUSE daemon is gone."""
    _check(_libc.umount2(os.fsencode(str(target)), MNT_DETACH if detach else 0), f"unmount {target}")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) + 0 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts() -> list[tuple[str, str]]:
    """``(mount point, filesystem type)`` of every mount this process sees, in mount order."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            out.append((_unescape(fields[4]), right.split()[0] if right else ""))
    return out


def device_of(target: str | Path) -> str:
    """The ``major:minor`` of the mount at ``target`` ('' when nothing is mounted there)."""
    root = os.path.normpath(str(target))
    found = ""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" - ")[0].split()
            if _unescape(fields[4]) == root:
                found = fields[2]
    return found


def set_readahead(target: str | Path, nbytes: int) -> bool:
    """The kernel's readahead window of the filesystem mounted at ``target`` (its bdi), best effort.

    A FUSE mount starts with 128 KiB: every read the daemon gets is 128 KiB, whatever the reader
    asks. A larger window lets the kernel ask the daemon for larger pieces."""
    device = device_of(target)
    try:
        Path(f"/sys/class/bdi/{device}/read_ahead_kb").write_text(str(max(nbytes // 1024, 128)))
    except OSError:
        return False
    return bool(device)


def mounted_under(target: str | Path) -> list[tuple[str, str]]:
    """Mounts at ``target`` or below it, deepest (latest) first: the order to unmount them."""
    root = os.path.normpath(str(target))
    found = [(point, fstype) for point, fstype in mounts() if point == root or point.startswith(root + "/")]
    return list(reversed(found))


def is_mounted(target: str | Path) -> bool:
    root = os.path.normpath(str(target))
    return any(point == root for point, _ in mounts())


def unmount_all(target: str | Path) -> None:
    """Every mount at or under ``target``, deepest first; a dead FUSE mount is detached."""
    for point, _fstype in mounted_under(target):
        try:
            unmount(point)
        except MountError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):  # gone already (its parent detached it)
                continue
            unmount(point, detach=True)
