"""Authentication of API calls and the credential ("one_auth") files.

Who uses it: the XML-RPC server (api/xmlrpc.py) calls an `Authenticator` with the session
string of every call; the daemon (app/) calls `generate_admin_credentials` on first start and
stores `hash_password(password)` for the user; the client (api/client.py, hence the CLI and
the hook commands) calls `resolve_auth_file` and `read_auth_file`.

Passwords are stored as OpenNebula's core auth driver stores them: the lowercase sha256 hex
digest of the password; verification compares digests in constant time. A session may also
be "user:token" with a login token from one.user.login (api/users.py): only the token's
sha256 is stored (User.tokens), with its expiry and optional effective group; an expired
token no longer authenticates.

The session string is "user:password", split at the first ':' as OpenNebula does. Nothing in
this module logs or formats a password or a whole session string: error messages name the
user at most.

Credential files follow OpenNebula's ONE_AUTH format (one line "user:password"). They are
created with mode 0600 under a fresh name in the target directory, fsynced, and then linked
(or renamed) into place, so the file is never visible half-written or with a wider mode.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from lazarus.domain.entities import LoginToken, User
from lazarus.domain.errors import AuthenticationError, LazarusError

from . import defaults

ADMIN_USER = "oneadmin"
AUTH_FAILED = "User couldn't be authenticated, aborting call."
# Compared against when the user does not exist, so that unknown and known users cost the same.
_DUMMY_HASH = hashlib.sha256(b"lazarus-no-such-user").hexdigest()


class CredentialsError(LazarusError):
    """A credential file is missing, unreadable or malformed (message names the path only)."""


def hash_password(password: str) -> str:
    """The stored form of a password: sha256 hex digest, as OpenNebula's core driver."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def verify_password(password: str, password_hash: str) -> bool:
    """True if `password` hashes to `password_hash`; constant-time comparison."""
    candidate = hash_password(password).encode("ascii")
    return hmac.compare_digest(candidate, password_hash.strip().lower().encode("utf-8"))


def split_session(session: str) -> tuple[str, str]:
    """'user:password' -> (user, password); raises AuthenticationError when there is no ':'."""
    user, sep, password = session.partition(":")
    if not sep or not user:
        raise AuthenticationError(AUTH_FAILED)
    return user, password


def new_token() -> str:
    """A login token: 40 random hex digits (what one.user.login hands out once)."""
    return secrets.token_hex(20)


def token_digest(token: str) -> str:
    """The stored form of a login token (its sha256 hex digest)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def valid_token(user: User, token: str, now: float) -> LoginToken | None:
    """The user's unexpired login token `token` is, if any (digests compared in constant
    time, every token compared)."""
    digest = token_digest(token).encode("ascii")
    found: LoginToken | None = None
    for candidate in user.tokens:
        same = hmac.compare_digest(digest, candidate.digest.encode("ascii"))
        if same and (candidate.expires < 0 or candidate.expires > now):
            found = candidate
    return found


class Authenticator:
    """Turns a session string into the authenticated User, or raises AuthenticationError.

    `lookup_user(name)` returns the User or None; it is called once per API call from the
    server's request threads, so it must be thread-safe and cheap. The error text is
    OpenNebula's; the server prefixes "[method] ". `now` (Unix seconds) decides token expiry.
    A session with a token that names an effective group (EGID) acts in that group only.
    """

    def __init__(
        self, lookup_user: Callable[[str], User | None], now: Callable[[], float] = time.time
    ) -> None:
        self._lookup_user = lookup_user
        self._now = now

    def __call__(self, session: str) -> User:
        name, password = split_session(session)
        user = self._lookup_user(name)
        stored = user.password_hash if user is not None else _DUMMY_HASH
        ok = verify_password(password, stored)
        if user is not None and not ok and user.tokens:
            token = valid_token(user, password, self._now())
            if token is not None:
                ok = True
                if token.egid >= 0 and token.egid in user.all_groups:
                    user = dataclasses.replace(user, gid=token.egid, groups=[])
        if user is None or not ok or not user.enabled:
            raise AuthenticationError(AUTH_FAILED)
        return user


# -- credential files ---------------------------------------------------------------------


def _make_private_dirs(directory: Path) -> None:
    """Create missing directories with mode 0700; existing ones are left as they are
    (the file may live in a shared directory the user chose, which we must not chmod)."""
    missing: list[Path] = []
    for path in (directory, *directory.parents):
        if path.exists():
            break
        missing.append(path)
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # the umask may have removed bits; never added any


def write_auth_file(path: Path, user: str, password: str, *, overwrite: bool = False) -> None:
    """Write "user:password" to `path` with mode 0600, atomically.

    Without `overwrite` an existing file is kept and FileExistsError is raised (two daemons
    starting at once cannot both win).
    """
    if ":" in user or "\n" in user or "\n" in password:
        raise CredentialsError("user names must not contain ':' or newlines")
    path = Path(path)
    _make_private_dirs(path.parent)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, f"{user}:{password}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails with FileExistsError if someone else was first
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_admin_credentials(path: Path, *, overwrite: bool = False) -> tuple[str, str]:
    """Create a one_auth file "oneadmin:<32 random hex digits>"; returns (user, password).

    The caller stores hash_password(password) for the user; the password itself is only in
    the file.
    """
    password = secrets.token_hex(16)
    write_auth_file(path, ADMIN_USER, password, overwrite=overwrite)
    return ADMIN_USER, password


FENCE_KEY_USER = "lazarus-fence"


def generate_fence_key(path: Path) -> str:
    """A new fence key "lazarus-fence:<32 random hex digits>" in `path` (0600, replaced at
    every daemon start); returns the key. `lazarus.host.fencecreds` (api/methods.py) serves the
    unmasked FENCE levels only to a caller that presents it: ft/fence_host finds the file
    through $LAZARUS_FENCE_KEY, set by the daemon for its hooks (docs/security.md)."""
    key = secrets.token_hex(16)
    write_auth_file(path, FENCE_KEY_USER, key, overwrite=True)
    return key


def read_fence_key(path: Path) -> str:
    """The key in a fence key file (CredentialsError when missing or malformed)."""
    user, key = split_session_file(path)
    if user != FENCE_KEY_USER or not key:
        raise CredentialsError(f"{path} is not a lazarus fence key file")
    return key


def split_session_file(path: Path) -> tuple[str, str]:
    try:
        return split_session(read_auth_file(path))
    except AuthenticationError as exc:
        raise CredentialsError(f"credentials file {path} does not hold 'user:password'") from exc


def read_auth_file(path: Path) -> str:
    """The session string in a one_auth file, trailing whitespace stripped (as the Ruby OCA)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CredentialsError(f"credentials file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        reason = type(exc).__name__
        raise CredentialsError(f"cannot read credentials file {path}: {reason}") from exc
    session = text.rstrip()
    if ":" not in session:
        raise CredentialsError(f"credentials file {path} does not hold 'user:password'")
    return session


def resolve_auth_file(env: Mapping[str, str] | None = None) -> Path:
    """$LAZARUS_AUTH, else $ONE_AUTH, else <data_dir>/one_auth (see api/defaults.py)."""
    env = os.environ if env is None else env
    for name in ("LAZARUS_AUTH", "ONE_AUTH"):
        value = env.get(name, "")
        if value:
            return Path(value)
    return defaults.default_auth_file(env)
