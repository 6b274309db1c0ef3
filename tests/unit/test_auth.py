"""api/auth.py and api/defaults.py: password hashes, the Authenticator, credential files,
and where the data directory, auth file and endpoint come from."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

import pytest

from lazarus.api import defaults
from lazarus.api.auth import (
    AUTH_FAILED,
    Authenticator,
    CredentialsError,
    generate_admin_credentials,
    hash_password,
    read_auth_file,
    resolve_auth_file,
    verify_password,
    write_auth_file,
)
from lazarus.domain.entities import User
from lazarus.domain.errors import AuthenticationError


def test_hash_is_sha256_hex_like_opennebula_core_driver() -> None:
    assert hash_password("") == hashlib.sha256(b"").hexdigest()
    assert hash_password("pässword") == hashlib.sha256("pässword".encode()).hexdigest()


def test_verify_password() -> None:
    stored = hash_password("secret")
    assert verify_password("secret", stored)
    assert verify_password("secret", stored.upper())  # hex digests compare case-insensitively
    assert not verify_password("secreT", stored)
    assert not verify_password("secret", "not-a-hash")


USERS = {
    "oneadmin": User(0, "oneadmin", hash_password("pw")),
    "colon": User(1, "colon", hash_password("a:b:c")),
    "off": User(2, "off", hash_password("pw"), enabled=False),
}


def test_authenticator_returns_the_user() -> None:
    authenticate = Authenticator(USERS.get)
    assert authenticate("oneadmin:pw") is USERS["oneadmin"]
    assert authenticate("colon:a:b:c") is USERS["colon"]  # split at the first ':'


@pytest.mark.parametrize(
    "session",
    ["oneadmin:wrong", "oneadmin:", "nobody:pw", "off:pw", "oneadmin", "", ":pw"],
    ids=[
        "bad-password",
        "empty-password",
        "unknown-user",
        "disabled",
        "no-colon",
        "empty",
        "no-user",
    ],
)
def test_authenticator_refuses_with_opennebula_text(session: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        Authenticator(USERS.get)(session)
    assert info.value.message == AUTH_FAILED == "User couldn't be authenticated, aborting call."


# -- credential files ---------------------------------------------------------------------


def test_generate_admin_credentials(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "one_auth"
    user, password = generate_admin_credentials(path)
    assert user == "oneadmin"
    assert re.fullmatch("[0-9a-f]{32}", password)
    assert path.read_text() == f"oneadmin:{password}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["one_auth"]  # no temporary file left behind
    assert read_auth_file(path) == f"oneadmin:{password}"


def test_generated_passwords_differ(tmp_path: Path) -> None:
    _, first = generate_admin_credentials(tmp_path / "1")
    _, second = generate_admin_credentials(tmp_path / "2")
    assert first != second


def test_existing_directory_mode_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    generate_admin_credentials(shared / "one_auth")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755


def test_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        generate_admin_credentials(tmp_path / "d" / "one_auth")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d" / "one_auth").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700


def test_file_is_complete_and_private_before_it_becomes_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the moment the final name appears (link/replace), the file already has its whole
    content and mode 0600; before that, only an O_EXCL 0600 temporary file exists."""
    path = tmp_path / "one_auth"
    seen: list[tuple[int, str, bool]] = []
    real_open, real_link, real_replace = os.open, os.link, os.replace

    def spy_open(p: os.PathLike[str] | str, flags: int, mode: int = 0o777, **kw: object) -> int:
        if Path(p).parent == tmp_path:
            assert flags & os.O_EXCL and flags & os.O_CREAT
            assert mode == 0o600
        return real_open(p, flags, mode, **kw)  # type: ignore[arg-type]

    def record(src: os.PathLike[str] | str) -> None:
        seen.append((stat.S_IMODE(os.stat(src).st_mode), Path(src).read_text(), path.exists()))

    def spy_link(src: str, dst: str, **kw: object) -> None:
        record(src)
        real_link(src, dst, **kw)  # type: ignore[arg-type]

    def spy_replace(src: str, dst: str, **kw: object) -> None:
        record(src)
        real_replace(src, dst, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "link", spy_link)
    monkeypatch.setattr(os, "replace", spy_replace)
    _, password = generate_admin_credentials(path)
    assert seen == [(0o600, f"oneadmin:{password}\n", False)]
    _, password2 = generate_admin_credentials(path, overwrite=True)
    assert seen[1] == (0o600, f"oneadmin:{password2}\n", True)
    assert read_auth_file(path) == f"oneadmin:{password2}"


def test_existing_file_is_not_overwritten_by_default(tmp_path: Path) -> None:
    path = tmp_path / "one_auth"
    path.write_text("oneadmin:keep\n")
    with pytest.raises(FileExistsError):
        generate_admin_credentials(path)
    assert path.read_text() == "oneadmin:keep\n"
    assert os.listdir(tmp_path) == ["one_auth"]


def test_write_auth_file_refuses_colon_in_user(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError):
        write_auth_file(tmp_path / "x", "a:b", "pw")


def test_read_auth_file_strips_trailing_whitespace_like_ruby(tmp_path: Path) -> None:
    path = tmp_path / "one_auth"
    path.write_text("  alice:pa ss \n\n\t")
    assert read_auth_file(path) == "  alice:pa ss"


def test_read_auth_file_errors_never_show_the_content(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="does not exist"):
        read_auth_file(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.write_text("justapassword\n")
    with pytest.raises(CredentialsError) as info:
        read_auth_file(bad)
    assert "justapassword" not in str(info.value)


# -- precedence of environment variables --------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LAZARUS_AUTH": "/l", "ONE_AUTH": "/o", "LAZARUS_DATA_DIR": "/d"}, "/l"),
        ({"LAZARUS_AUTH": "", "ONE_AUTH": "/o", "LAZARUS_DATA_DIR": "/d"}, "/o"),
        ({"ONE_AUTH": "/o", "LAZARUS_DATA_DIR": "/d"}, "/o"),
        ({"LAZARUS_DATA_DIR": "/d"}, "/d/one_auth"),
    ],
    ids=["lazarus-auth", "empty-is-unset", "one-auth", "data-dir"],
)
def test_resolve_auth_file_precedence(env: dict[str, str], expected: str) -> None:
    assert resolve_auth_file(env) == Path(expected)


def test_resolve_auth_file_default_uses_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert resolve_auth_file({"HOME": "/home/u"}) == Path("/home/u/.local/share/lazarus/one_auth")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert resolve_auth_file({"HOME": "/root"}) == Path("/var/lib/lazarus/one_auth")


@pytest.mark.parametrize(
    ("env", "is_root", "expected"),
    [
        ({"LAZARUS_DATA_DIR": "/srv/lz", "HOME": "/h"}, True, "/srv/lz"),
        ({"HOME": "/h"}, True, "/var/lib/lazarus"),
        ({"HOME": "/h"}, False, "/h/.local/share/lazarus"),
        ({"HOME": "/h", "XDG_DATA_HOME": "/x"}, False, "/x/lazarus"),
        ({"HOME": "/h", "XDG_DATA_HOME": ""}, False, "/h/.local/share/lazarus"),
    ],
    ids=["explicit", "root", "user", "xdg", "empty-xdg"],
)
def test_data_dir(env: dict[str, str], is_root: bool, expected: str) -> None:
    assert defaults.data_dir(env, is_root=is_root) == Path(expected)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LAZARUS_XMLRPC": "http://a:1/RPC2", "ONE_XMLRPC": "http://b:2/RPC2"}, "http://a:1/RPC2"),
        ({"LAZARUS_XMLRPC": "", "ONE_XMLRPC": "http://b:2/RPC2"}, "http://b:2/RPC2"),
        ({}, "http://127.0.0.1:2633/RPC2"),
    ],
    ids=["lazarus", "one", "default"],
)
def test_endpoint_precedence(env: dict[str, str], expected: str) -> None:
    assert defaults.endpoint(env) == expected
