"""Files only the daemon's uid may read: logs and run records, created 0600 whatever the umask.

    with open_private(path) as log:      # append, text, created 0600 (an older, wider file
        log.write(line)                  # is narrowed to 0600 when opened)
    write_private(path, text)            # whole file, created 0600

The data directory is 0700 already; this is the second wall, for a log copied or a directory
made wider by an operator (docs/security.md).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TextIO

PRIVATE = 0o600


def open_private(path: Path | str, mode: str = "a") -> TextIO:
    """Open `path` for appending ("a") or writing ("w") as text, the file mode 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, PRIVATE)
        if mode == "a":  # literal modes: typed as text files
            return open(fd, "a", encoding="utf-8")
        return open(fd, "w", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path | str, text: str) -> None:
    with open_private(path, "w") as out:
        out.write(text)
