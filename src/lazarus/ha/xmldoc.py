"""Parsing the documents ft/host_error reads from the API: hardened, and fast for big pools.

Everything that makes XML dangerous to parse (entity expansion, external entities, fetching a
DTD) needs a document type declaration. So a decoded document without one goes to the
stdlib's C parser, and anything else (bytes, whose encoding could hide the declaration, or a
text with a DOCTYPE) to defusedxml, which refuses entity declarations. defusedxml alone
parses through Python callbacks, several times slower: in the simulator, one.hostpool.info
over 2,000 hosts took half a second to parse, most of a failed host's handling time.
"""

from __future__ import annotations

from xml.etree import ElementTree as StdET
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET

ParseError = StdET.ParseError


def parse(document: str | bytes) -> Element:
    if isinstance(document, str) and "<!DOCTYPE" not in document:
        return StdET.fromstring(document)
    return SafeET.fromstring(document)
