"""Files that hold personal data or secrets, readable by the service's own account only (GDPR 32(1)).

The database (and SQLite's `-wal`, `-shm` and `-journal` beside it), the signing keys, the stored secret key, the
mail outbox and backups are created 0600 in folders created 0700, with explicit modes rather than a process umask
(the server runs inside other processes too: tests, an ASGI server started by gunicorn). Files and folders that
exist already are tightened when the server starts (`tighten_private_paths`), each change logged.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.settings import Settings

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
log = logging.getLogger("server.files")


def private_dir(path: Path) -> Path:
    """`path` as a folder, created 0700 (missing parents too) when it does not exist."""
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(folder, PRIVATE_DIR)  # mkdir's mode passes through the umask, which may take bits away, not add
    return path


def create_private(path: Path, *, exclusive: bool = True) -> int:
    """Open `path` for writing, created 0600 (its folder 0700 if missing); returns the descriptor. `exclusive`:
    refuse a file that exists (a file written whole under a new name); otherwise an existing file is opened as
    it is."""
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else 0)
    return os.open(path, flags, PRIVATE_FILE)


def write_private(path: Path, data: bytes) -> None:
    """Write a new file of the owner's only (refused if `path` exists); a write that fails (a full disk) leaves no
    half-written file behind."""
    fd = create_private(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError:
        path.unlink(missing_ok=True)
        raise


def tighten(path: Path) -> bool:
    """Take group and other permissions off `path` (0600 for a file, 0700 for a folder) when it has any; True if
    changed. A folder shared with others (sticky, like /tmp) or owned by another account is left as it is."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077:
        return False
    is_dir = stat.S_ISDIR(info.st_mode)
    if is_dir and (info.st_mode & stat.S_ISVTX or info.st_uid != os.getuid()):
        return False
    wanted = PRIVATE_DIR if is_dir else PRIVATE_FILE
    os.chmod(path, wanted)
    log.warning(
        "tightened the permissions of %s from %s to %s (it holds personal data or secrets)",
        path,
        oct(stat.S_IMODE(info.st_mode)),
        oct(wanted),
    )
    return True


def tighten_private_paths(folders: Iterable[Path], files: Iterable[Path]) -> list[Path]:
    """Tighten each folder, the files directly in it, and each file given (a missing one is skipped); returns what
    changed."""
    changed = []
    for folder in folders:
        if not folder.is_dir():
            continue
        if tighten(folder):
            changed.append(folder)
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and tighten(entry):
                changed.append(entry)
    for file in files:
        if tighten(file):
            changed.append(file)
    return changed


def sqlite_files(database: Path) -> list[Path]:
    """The SQLite database file and the files SQLite keeps beside it."""
    return [database, *(database.with_name(database.name + suffix) for suffix in SQLITE_SIDECARS)]


def tighten_service_files(settings: Settings, database: Path | None) -> list[Path]:
    """At the server's start: the key and mail folders with everything in them, the data folder with the files the
    service writes there (not every file: DATA_DIR may be a folder of the operator's), and the SQLite database with
    its sidecars."""
    data = settings.data_dir
    own = [data, data / "secret.key", data / "demo-client.json", data / "demo-staff.json"]
    return tighten_private_paths(
        [settings.signing_keys_dir, settings.mail_dir], [*own, *(sqlite_files(database) if database else [])]
    )
