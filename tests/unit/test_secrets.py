"""The one masking rule (domain/secrets.py, docs/security.md): names, words inside values, text."""

from __future__ import annotations

import pytest

from lazarus.domain.secrets import MASK, is_secret, mask_bytes, mask_text, mask_words, redact
from lazarus.domain.template import Template


@pytest.mark.parametrize(
    "name",
    ["PASSWORD", "password", "PASSWD", "SECRET", "TOKEN", "ROOT_PASSWORD", "ROOTPASSWD",
     "VNC_PASSWD", "CEPH_SECRET", "CLIENTSECRET", "API_TOKEN", "ACCESSTOKEN"],
)
def test_secret_names(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize(
    "name", ["PASSWORD_FILE", "ROOTPASSWORD", "USERNAME", "TOKENS", "SECRET_FILE", "PASS"]
)
def test_names_that_are_not_secrets(name: str) -> None:
    assert not is_secret(name)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("passwd=x", f"passwd={MASK}"),
        ("lanplus=1 password=hunter2 power_wait=0", f"lanplus=1 password={MASK} power_wait=0"),
        ("--password hunter2 -v", f"--password {MASK} -v"),
        ("--ipmi-password=hunter2", f"--ipmi-password={MASK}"),
        ("-passwd hunter2", f"-passwd {MASK}"),
        ("ceph_secret=abc systems_uri=/x", f"ceph_secret={MASK} systems_uri=/x"),
        ("--password-file /etc/pw", "--password-file /etc/pw"),
        ("ssl_insecure=1 systems_uri=/redfish/v1/Systems/n1", None),
        ("-m -p 5", None),
    ],
)
def test_words_inside_values(text: str, shown: str | None) -> None:
    assert mask_words(text) == (text if shown is None else shown)


def test_template_vectors_and_options_are_masked() -> None:
    template = Template.parse(
        'ROOT_PASSWORD = "r00t"\nROOTPASSWD = r00t2\nCONTEXT = [ PASSWORD = "ctx", NET = "a" ]\n'
        'CEPH_SECRET = "c3ph"\nFENCE = [ AGENT = "fence_ipmilan", OPTIONS = "passwd=x lanplus=1" ]'
        '\nNAME = "web"\n'
    )
    masked = redact(template)
    assert masked.get("ROOT_PASSWORD") == MASK and masked.get("ROOTPASSWD") == MASK
    assert masked.get("CEPH_SECRET") == MASK and masked.get("NAME") == "web"
    assert masked.vectors("CONTEXT")[0].as_dict() == {"PASSWORD": MASK, "NET": "a"}
    assert masked.vectors("FENCE")[0].get("OPTIONS") == f"passwd={MASK} lanplus=1"
    assert template.get("ROOT_PASSWORD") == "r00t"  # the original is untouched


def test_a_template_without_secrets_is_the_same_object() -> None:
    template = Template.parse('NAME = "web"\nCPU = 1\nFENCE = [ AGENT = "fence_sim" ]\n')
    assert redact(template) is template


@pytest.mark.parametrize(
    "text",
    [
        'FENCE = [ AGENT = "fence_redfish", PASSWORD = "hunter2", IP = "10.0.0.1" ]',
        "FENCE=[AGENT=fence_redfish,PASSWORD=hunter2]",
        "<TEMPLATE><FENCE><AGENT>fence_redfish</AGENT><PASSWORD><![CDATA[hunter2]]></PASSWORD>"
        "</FENCE></TEMPLATE>",
        "<TEMPLATE><OPTIONS>password=hunter2</OPTIONS></TEMPLATE>",
        'ARGUMENTS = "--password hunter2 $TEMPLATE"',
    ],
    ids=["syntax", "compact", "xml", "xml-options", "arguments"],
)
def test_text_parameters_are_masked(text: str) -> None:
    shown = mask_text(text)
    assert "hunter2" not in shown and MASK in shown
    assert "fence_redfish" in shown or "OPTIONS" in shown or "ARGUMENTS" in shown


def test_output_bytes_are_masked_and_binary_kept() -> None:
    assert mask_bytes(b"\xff\xfe password=x\n") == b"\xff\xfe password=****\n"
    assert mask_bytes(b"\x00\x01 plain") == b"\x00\x01 plain"


# -- every document ----------------------------------------------------------------------------
SECRET_TEMPLATE = (
    'ROOT_PASSWORD = "clear-1"\nCONTEXT = [ PASSWORD = "clear-2", NETWORK = "YES" ]\n'
    'CEPH_SECRET = "clear-3"\nOPTIONS = "passwd=clear-4 lanplus=1"\nCPU = "1"\nMEMORY = "64"\n'
)


def _documents() -> dict[str, str]:
    from lazarus.domain import xml as docs
    from lazarus.domain.entities import VM, Cluster, Datastore, Host
    from lazarus.domain.hooks import parse_hook
    from lazarus.domain.xml.hooks import hook_pool_xml, hook_xml

    template = Template.parse(SECRET_TEMPLATE)
    vm = VM(id=1, name="web", template=Template.parse(SECRET_TEMPLATE),
            user_template=Template.parse('ROOTPASSWD = "clear-5"\nHA = "YES"\n'))
    host = Host(id=0, name="n1", im_mad="sim", vm_mad="sim", template=template)
    ds = Datastore(id=100, name="ds", template=template)
    hook = parse_hook(Template.parse(
        'NAME = "h"\nTYPE = "api"\nCALL = "one.host.update"\nCOMMAND = "x"\n'
        'ARGUMENTS = "--password clear-6 $API"\nCEPH_SECRET = "clear-3"\n'))
    return {
        "vm": docs.vm_xml(vm),
        "vm-short": docs.vm_short_xml(vm),
        "vm-pool-extended": docs.vm_pool_extended_xml([vm]),
        "host": docs.host_xml(host),
        "host-pool": docs.host_pool_xml([host]),
        "datastore": docs.datastore_xml(ds),
        "datastore-pool": docs.datastore_pool_xml([ds]),
        "cluster": docs.cluster_xml(Cluster(id=0, name="c", template=template), [], []),
        "hook": hook_xml(hook, []),
        "hook-pool": hook_pool_xml([hook]),
    }


@pytest.mark.parametrize("kind", list(_documents()))
def test_no_document_shows_a_secret(kind: str) -> None:
    document = _documents()[kind]
    assert "clear-" not in document, document


def test_secret_words_inside_a_quoted_template_value() -> None:
    text = 'FENCE = [ AGENT = "x", OPTIONS = "lanplus=1 passwd=clear --password clear" ]'
    assert "clear" not in mask_text(text)


def test_a_masked_template_written_back_keeps_the_stored_secrets() -> None:
    """Before: one.host.update (replace) of the template a client read stored "****"."""
    from lazarus.domain.secrets import keep_stored_secrets

    stored = Template.parse(
        'FENCE = [ AGENT = "fence_ipmilan", IP = "10.0.0.1", PASSWORD = "pw-one" ]\n'
        'FENCE = [ AGENT = "fence_redfish", IP = "10.0.0.2", PASSWORD = "pw-two",'
        ' OPTIONS = "ssl_insecure=1 passwd=pw-three" ]\n'
        'ROOT_PASSWORD = "root-pw"\nDESCRIPTION = "x"')
    shown = redact(stored)
    assert "pw-" not in shown.render()
    assert keep_stored_secrets(shown, stored).render() == stored.render()
    # the levels reordered, another attribute changed: each level keeps its own secret
    swapped = Template([shown.items[1], shown.items[0], ("DESCRIPTION", "y")])
    kept = keep_stored_secrets(swapped, stored)
    assert [v.get("PASSWORD") for v in kept.vectors("FENCE")] == ["pw-two", "pw-one"]
    assert "ROOT_PASSWORD" not in kept  # dropped on purpose: dropped
    # an edited level (new IP) keeps its password; a new password is taken as sent
    edited = Template.parse('FENCE = [ AGENT = "fence_ipmilan", IP = "10.0.0.9", '
                            'PASSWORD = "****" ]\nROOT_PASSWORD = "new-pw"')
    kept = keep_stored_secrets(edited, stored)
    assert kept.vectors("FENCE")[0].get("PASSWORD") == "pw-one"
    assert kept.get("ROOT_PASSWORD") == "new-pw"
    # "****" where nothing was stored stays as sent
    assert keep_stored_secrets(Template.parse('TOKEN = "****"'), Template()).get("TOKEN") == MASK
