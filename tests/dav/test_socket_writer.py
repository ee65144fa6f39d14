"""The response writer of dav/http.py: a block leaves from the caller's own buffer, however many
send()s the socket needs (cheroot's writer copies it into a bytearray and again once per send)."""

from __future__ import annotations

import hashlib
import os
import socket
import threading

import pytest

from tgdav.dav.http import _SocketWriter

MIB = 1 << 20


@pytest.mark.timeout(30)
def test_a_block_that_needs_many_sends_leaves_whole_and_uncopied():
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)     # a slow client: partial sends
    a.settimeout(10)
    got = hashlib.sha256()

    def client():
        while data := b.recv(4096):
            got.update(data)
    reader = threading.Thread(target=client)
    reader.start()
    block = os.urandom(MIB)
    writer = _SocketWriter(a, "wb")
    sends = []
    write = writer.raw.write

    def counting(view):
        sends.append(view)
        return write(view)
    writer.raw.write = counting
    assert writer.write(block) == MIB and writer.write(b"end") == 3
    a.close()
    reader.join(10)
    assert got.digest() == hashlib.sha256(block + b"end").digest()
    assert writer.bytes_written == MIB + 3
    first = [v for v in sends if v.obj is block]
    assert len(first) > 1, len(sends)                 # the socket took the block in several sends
    assert len(first) == len(sends) - 1               # ... each one from the block itself
