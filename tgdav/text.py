"""Text from Telegram made safe to show: one rule for every output (WebDAV XML, HTML, logs, metrics).

Names, titles, captions and MIME types are written by whoever can post. Some characters cannot be
shown as they are:

- XML 1.0 forbids C0 controls other than tab, LF and CR, lone surrogates, U+FFFE and U+FFFF: one of
  them in a PROPFIND answer and rclone, Finder and every strict parser refuse the whole listing;
- HTML calls C1 controls and every noncharacter (U+FDD0..U+FDEF, U+xFFFE and U+xFFFF in each plane)
  a parse error;
- the bidi embedding, override and isolate controls (U+202A..U+202E, U+2066..U+2069) reorder what
  follows them: "vid\\u202e4pm.html" shows as "vidlmth.mp4".

safe() replaces each of them with U+FFFD (the replacement character: visibly "something was here").
Names get it once at the source (tgdav.telegram.names.clean, channel titles included), so a name is
the same in every listing, page, log line and metric; every output applies it again to whatever
else it prints. for_log() makes a field one printable log line: control characters, line
separators and bidi controls become backslash escapes (\\x1b, \\r, \\u202e), a backslash \\\\.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"

_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"      # controls (XML forbids C0, HTML C1)
    "\ud800-\udfff"                             # lone surrogates (a str from surrogateescape)
    "\ufdd0-\ufdef\ufffe\uffff"                 # noncharacters of the BMP
    + "".join(f"{chr(p + 0xfffe)}{chr(p + 0xffff)}" for p in range(0x10000, 0x110000, 0x10000))
    + "\u202a-\u202e\u2066-\u2069]")            # bidi embeddings, overrides, isolates

_LOG_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LOG_NAMES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def safe(text: str) -> str:
    """`text` with every character no XML or HTML output may hold, and every bidi control that could
    disguise it, replaced by U+FFFD."""
    return _UNSAFE.sub(REPLACEMENT, text)


def is_safe(text: str) -> bool:
    return _UNSAFE.search(text) is None


def for_log(text: str) -> str:
    """`text` as part of one log line: nothing in it can end the line, move the cursor, color the
    terminal or reorder what follows."""
    return _LOG_UNSAFE.sub(_log_escape, text)


def _log_escape(m: re.Match) -> str:
    c = m.group()
    if c in _LOG_NAMES:
        return _LOG_NAMES[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
