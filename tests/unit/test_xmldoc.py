"""ha/xmldoc.py: the fast path never parses a document type declaration."""

from __future__ import annotations

import pytest
from defusedxml import DefusedXmlException

from lazarus.ha.xmldoc import ParseError, parse

BOMB = (
    '<?xml version="1.0"?><!DOCTYPE HOST [<!ENTITY a "aaaaaaaaaa">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><HOST><NAME>&b;</NAME></HOST>'
)
EXTERNAL = '<!DOCTYPE HOST [<!ENTITY x SYSTEM "file:///etc/passwd">]><HOST>&x;</HOST>'


def test_plain_documents_parse() -> None:
    root = parse("<HOST_POOL><HOST><ID>3</ID><STATE>2</STATE></HOST></HOST_POOL>")
    assert root.findtext("HOST/ID") == "3"
    assert parse(b"<HOST><ID>4</ID></HOST>").findtext("ID") == "4"


@pytest.mark.parametrize("text", [BOMB, EXTERNAL])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_entity_declarations_are_refused(text: str, as_bytes: bool) -> None:
    with pytest.raises(DefusedXmlException):
        parse(text.encode() if as_bytes else text)


def test_bytes_in_another_encoding_cannot_slip_a_declaration_past() -> None:
    with pytest.raises(DefusedXmlException):
        parse(('<?xml version="1.0" encoding="UTF-16"?>' + EXTERNAL).encode("utf-16"))


def test_malformed_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse("<HOST><ID>1</HOST>")
