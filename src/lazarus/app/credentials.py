"""The oneadmin credentials at daemon start: the user in the store and its one_auth file agree.

Called by app/daemon.py before the API opens. Four cases:

- neither exists (first start): a password is generated, the file written (0600, atomically:
  api/auth.write_auth_file) and the user stored with its hash;
- the user exists but the file is gone (deleted, a new disk, a restored database): a new
  password is generated and its hash stored in the same transaction that writes the file. The
  file is written before the commit and removed again if the commit fails, so the file and
  the stored hash never disagree. Before this, the daemon wrote a new password next to the
  old hash and the CLI and every HA hook failed to authenticate, silently;
- the file exists but not the user: the user is stored with the file's password;
- both exist: kept; a file that does not match the stored hash is logged as an error (an
  operator's edit is not overwritten).

Nothing here logs a password, a hash or a session string; the lines name the path.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from lazarus.api import auth
from lazarus.domain.entities import User
from lazarus.ports.store import Store

log = logging.getLogger("lazarus.daemon")

ADMIN = auth.ADMIN_USER


def ensure_admin(store: Store, auth_file: Path) -> tuple[Path, bool]:
    """The oneadmin user exists and its password is in `auth_file`. True when generated now."""
    user = store.user_by_name(ADMIN)
    if user is not None and auth_file.exists():
        _check(user, auth_file)
        return auth_file, False
    if user is not None:
        _renew(store, user, auth_file)
        return auth_file, True
    if auth_file.exists():
        name, password = auth.split_session(auth.read_auth_file(auth_file))
        generated = False
    else:
        name, password = auth.generate_admin_credentials(auth_file)
        generated = True
    with store.transaction() as tx:
        if tx.user_by_name(name) is None:
            tx.add_user(User(id=-1, name=name, password_hash=auth.hash_password(password)))
    return auth_file, generated


def _renew(store: Store, user: User, auth_file: Path) -> None:
    password = secrets.token_hex(16)
    written = False
    try:
        with store.transaction() as tx:
            user.password_hash = auth.hash_password(password)
            tx.save_user(user)
            auth.write_auth_file(auth_file, user.name, password)
            written = True
    except BaseException:
        if written:  # the hash was not stored: a file with the new password would lie
            auth_file.unlink(missing_ok=True)
        raise
    log.warning(
        "lazarus: the credentials file %s was missing while user %s exists: a new password "
        "was generated, its hash stored and the file written (mode 0600); clients and hooks "
        "holding the old password must read the new file", auth_file, user.name,
    )


def _check(user: User, auth_file: Path) -> None:
    try:
        name, password = auth.split_session(auth.read_auth_file(auth_file))
    except Exception as exc:  # unreadable or malformed: say so, the daemon can still serve
        log.error("lazarus: the credentials file %s cannot be used: %s", auth_file,
                  type(exc).__name__)
        return
    if name != user.name or not auth.verify_password(password, user.password_hash):
        log.error(
            "lazarus: the credentials file %s does not match the stored password of %s: the "
            "CLI and the hooks will fail to authenticate (remove the file and restart to have "
            "new credentials generated)", auth_file, user.name,
        )
