"""The OpenNebula template language (domain/template.py): round trip, accepted forms, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lazarus.domain.errors import TemplateSyntaxError
from lazarus.domain.template import Template, Vector, quote, valid_name

NAMES = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("ABCXYZ_abcxyz"),
    st.text("ABCXYZabcxyz0189_.-", max_size=10),
)
VALUES = st.text(max_size=40) | st.sampled_from(['"', "\\", '\\"', "\n", "a # b", "[x]", "=,"])
VECTORS = st.lists(st.tuples(NAMES.map(str.upper), VALUES), max_size=5).map(Vector)
TEMPLATES = st.lists(
    st.tuples(NAMES.map(str.upper), VALUES | VECTORS), max_size=10
).map(Template)


@settings(max_examples=150, deadline=None)
@given(TEMPLATES)
def test_parse_of_render_is_identity(template: Template) -> None:
    assert Template.parse(template.render()) == template


@settings(max_examples=100, deadline=None)
@given(NAMES)
def test_generated_names_are_valid_and_read_case_insensitively(name: str) -> None:
    assert valid_name(name)
    assert Template.parse(f"{name} = x").items == [(name.upper(), "x")]


@given(TEMPLATES)
@settings(max_examples=50, deadline=None)
def test_repeated_keys_keep_their_order(template: Template) -> None:
    doubled = Template(template.items + template.items)
    assert Template.parse(doubled.render()).items == doubled.items


def test_docstring_forms() -> None:
    text = (
        'NAME   = "vm one"              # quoted value; \\" and \\\\ are the escapes\n'
        "CPU    = 0.5                   # bare value (up to the end of the token)\n"
        'DISK   = [ IMAGE = "base", SIZE = 1024 ]     # vector attribute\n'
        'DISK   = [ IMAGE = "data" ]                  # keys may repeat; order is kept\n'
    )
    template = Template.parse(text)
    assert template.items == [
        ("NAME", "vm one"),
        ("CPU", "0.5"),
        ("DISK", Vector([("IMAGE", "base"), ("SIZE", "1024")])),
        ("DISK", Vector([("IMAGE", "data")])),
    ]
    assert template.get("cpu") == "0.5"
    assert template.get_float("CPU", 1.0) == 0.5
    assert [v.get("image") for v in template.vectors("disk")] == ["base", "data"]


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("", []),
        ("   \n\n  # only a comment\n", []),
        ("KEY = value", [("KEY", "value")]),
        ("key=value\n", [("KEY", "value")]),
        ("A = b # trailing comment", [("A", "b")]),
        ('A = "b # not a comment"', [("A", "b # not a comment")]),
        ("A =\nB = c", [("A", ""), ("B", "c")]),
        ('A = ""', [("A", "")]),
        ("A = # comment", [("A", "")]),
        ("A=b,C=d", [("A", "b"), ("C", "d")]),
        ("A = b , C = d\n", [("A", "b"), ("C", "d")]),
        ('A = "multi\nline"', [("A", "multi\nline")]),
        ('A = "q\\"uote" ', [("A", 'q"uote')]),
        ('A = "back\\\\slash"', [("A", "back\\slash")]),
        ('A = "keep \\n as is"', [("A", "keep \\n as is")]),
        ("A = b\r\nC = d\r\n", [("A", "b"), ("C", "d")]),
        ("A.b-c_1 = x", [("A.B-C_1", "x")]),
        ("A = 10.0.0.1:2633/RPC2", [("A", "10.0.0.1:2633/RPC2")]),
        ("A = héllo", [("A", "héllo")]),
        ("V = [ ]", [("V", Vector())]),
        ("V = [\n  A = b,\n  C = \"d\"\n]", [("V", Vector([("A", "b"), ("C", "d")]))]),
        ("V = [ A = b,\n # comment\n C = d, ]", [("V", Vector([("A", "b"), ("C", "d")]))]),
        ("V = [ A = , B = c ]", [("V", Vector([("A", ""), ("B", "c")]))]),
        ("V = [ A = b, A = c ]", [("V", Vector([("A", "b"), ("A", "c")]))]),
        ("V=[A=b],W=[C=d]", [("V", Vector([("A", "b")])), ("W", Vector([("C", "d")]))]),
    ],
)
def test_accepted_forms(text: str, items: list[object]) -> None:
    assert Template.parse(text).items == items


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ('A = "never closed', "unterminated quoted value", 1, 18),
        ('A = b\nB = "open\n\n', "unterminated quoted value", 4, 1),
        ("V = [ A = b", "unterminated vector", 1, 12),
        ("V = [ A = b\n  C = d ]", "expected ',' or ']'", 2, 3),
        ("A b", "expected '='", 1, 3),
        ("A\n= b", "expected '='", 1, 2),
        ("= b", "expected an attribute name", 1, 1),
        ("A = b\n!!", "expected an attribute name", 2, 1),
        ("A = b c", "unexpected 'c' after the value of A", 1, 7),
        ('A = "b" "c"', "unexpected '\"' after the value of A", 1, 9),
        ("A = ,", "where a value was expected", 1, 5),
        ("A = b]", "unexpected ']' after the value of A", 1, 6),
        ("V = [ 1 = b ]", "expected an attribute name", 1, 7),
        ("V = [ A ]", "expected '='", 1, 9),
    ],
)
def test_syntax_errors_say_where(text: str, message: str, line: int, column: int) -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        Template.parse(text)
    assert message in str(info.value)
    assert (info.value.line, info.value.column) == (line, column)
    assert f"at line {line}, column {column}" in str(info.value)


def test_quote_escapes_only_quote_and_backslash() -> None:
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\nd"'


def test_editing() -> None:
    template = Template.parse("A = 1\nB = 2\nA = 3\nV = [ X = y ]")
    template.set("a", "9")
    assert template.items[:2] == [("A", "9"), ("B", "2")] and len(template) == 3
    template.add("c", "4")
    template.remove("B")
    assert [name for name, _ in template] == ["A", "V", "C"]
    copy = template.copy()
    copy.vectors("V")[0].set("x", "changed")
    assert template.vectors("V")[0].get("X") == "y"
    template.merge(Template.parse("A = merged\nD = new"))
    assert template.get("A") == "merged" and template.get("D") == "new"
    assert "d" in template and "Z" not in template


@pytest.mark.parametrize("raw", ["", "  ", "abc", "inf", "-inf", "nan", "1e999"])
def test_get_int_and_get_float_fall_back_on_anything_not_a_finite_number(raw: str) -> None:
    template = Template([("N", raw)])
    assert template.get_int("N", 7) == 7
    assert template.get_float("N", 7.0) == 7.0


def test_get_int_accepts_decimals() -> None:
    assert Template([("N", "2.9")]).get_int("N", 0) == 2
    assert Template([("N", " 12 ")]).get_int("N", 0) == 12


@settings(max_examples=50, deadline=None)
@given(TEMPLATES)
def test_json_round_trip(template: Template) -> None:
    assert Template.from_json(template.to_json()) == template


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('AB=[],"\\# \n\tx\r') | st.characters(), max_size=40))
def test_any_text_parses_or_raises_a_template_syntax_error(text: str) -> None:
    try:
        template = Template.parse(text)
    except TemplateSyntaxError as exc:
        assert exc.line >= 1 and exc.column >= 1
    else:
        assert Template.parse(template.render()) == template
