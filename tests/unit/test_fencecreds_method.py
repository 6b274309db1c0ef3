"""lazarus.host.fencecreds (api/methods.py): the unmasked FENCE levels, for the fence key only."""

from __future__ import annotations

import pytest

from helpers.core import Harness
from lazarus.api.methods import Api
from lazarus.api.xmlrpc import CallContext
from lazarus.domain.entities import User
from lazarus.domain.errors import AllocateError, AuthorizationError
from lazarus.domain.hooks import parse_hook
from lazarus.domain.template import Template

CTX = CallContext(User(0, "oneadmin", "x"), "lazarus.host.fencecreds", "test")
FENCE = 'FENCE = [ AGENT = "fence_ipmilan", PASSWORD = "clear-pw" ]\nROOT_PASSWORD = "other"\n'


def test_the_key_reads_the_fence_levels_and_nothing_more() -> None:
    with Harness(hosts=1, start=False) as h:
        host_id = h.host_id("node1")
        h.inv.update_host(host_id, Template.parse(FENCE), True)
        api = Api(h.controller, fence_key="k" * 32)
        assert "clear-pw" not in api.host_info(CTX, host_id)
        document = api.host_fencecreds(CTX, host_id, "k" * 32)
        assert "clear-pw" in document and "other" not in document
        for key in ("", "k" * 31, "wrong"):
            with pytest.raises(AuthorizationError):
                api.host_fencecreds(CTX, host_id, key)
        with pytest.raises(AuthorizationError):  # a daemon without a key serves nobody
            Api(h.controller).host_fencecreds(CTX, host_id, "")


def test_fencecreds_cannot_be_hooked() -> None:
    text = 'NAME = "h"\nTYPE = "api"\nCALL = "lazarus.host.fencecreds"\nCOMMAND = "x"\n'
    with pytest.raises(AllocateError, match="only reads"):
        parse_hook(Template.parse(text), {"lazarus.host.fencecreds"})
