"""tgdav.text: one rule for text from Telegram in every output (promise 4), and names cleaned with it
at the source. Property-tested over all of Unicode (lone surrogates, noncharacters, controls)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import html5lib
from hypothesis import given, settings, strategies as st

from tgdav import text
from tgdav.telegram import names

ANY = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=60)


@settings(max_examples=500)
@given(ANY)
def test_safe_text_is_always_valid_xml_and_html(s):
    out = text.safe(s)
    ET.fromstring(f"<a>{escape(out)}</a>".encode("utf-8"))          # strict: no forbidden character
    html5lib.HTMLParser(strict=True).parse(f"<!doctype html><title>t</title><p>{escape(out)}")
    assert text.safe(out) == out and text.is_safe(out)


@settings(max_examples=500)
@given(ANY)
def test_a_cleaned_name_is_safe_and_stays_put(s):
    name = names.clean(s)
    assert text.is_safe(name) and names.clean(name) == name
    name.encode("utf-8")


def test_what_xml_forbids_becomes_the_replacement_character():
    assert names.clean("a\uffffb\ufffe.txt") == "a\ufffdb\ufffd.txt"
    assert names.clean("x\udcff\ud800.bin") == "x\ufffd\ufffd.bin"
    assert text.safe("t\x85\x9f\ufdd0\U0010ffff") == "t" + "\ufffd" * 4


def test_bidi_controls_cannot_disguise_a_name():
    assert names.clean("vid\u202e4pm.html") == "vid\ufffd4pm.html"
    for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        assert c not in names.clean(f"a{c}b.txt")
    assert names.clean("\u05e9\u05dc\u05d5\u05dd\u200f.txt") == "\u05e9\u05dc\u05d5\u05dd\u200f.txt"   # marks stay


@given(ANY)
def test_a_log_field_is_one_printable_line(s):
    out = text.for_log(s)
    assert len(out.splitlines()) <= 1 and not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in out)
    assert "\x1b" not in out and "\u202e" not in out


def test_log_escapes_are_unambiguous():
    assert text.for_log("a\x1b[31mb\rc\\x1b") == "a\\x1b[31mb\\rc\\\\x1b"
