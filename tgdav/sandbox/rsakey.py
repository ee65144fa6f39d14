"""The sandbox's RSA key pair, which clients use to encrypt the first step of the DH exchange.

With a state dir the key is generated once and kept in `rsa_key.pem` (owner-only), so clients that
registered the public key keep working across restarts. Without one, a single in-memory key serves the
whole process: generating a 2048-bit key in pure Python takes seconds, so it is done at most once.
"""

from __future__ import annotations

import functools
import os
import struct
from hashlib import sha1
from pathlib import Path

import rsa
from telethon.tl.tlobject import TLObject

KEY_BITS = 2048          # the client encrypts 255 bytes and expects a 256-byte block back
KEY_FILE = "rsa_key.pem"


def _minimal_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class SandboxRsaKey:
    """One RSA private key: its PKCS#1 public PEM, its Telegram fingerprint and raw decryption."""

    def __init__(self, private: rsa.PrivateKey) -> None:
        if private.n.bit_length() != KEY_BITS:
            raise ValueError(f"the sandbox RSA key must have a {KEY_BITS}-bit modulus")
        self._key = private
        self.public_pem: str = rsa.PublicKey(private.n, private.e).save_pkcs1().decode()
        digest = sha1(TLObject.serialize_bytes(_minimal_bytes(private.n))
                      + TLObject.serialize_bytes(_minimal_bytes(private.e))).digest()
        self.fingerprint: int = struct.unpack("<q", digest[-8:])[0]

    @classmethod
    def generate(cls) -> "SandboxRsaKey":
        return cls(rsa.newkeys(KEY_BITS, poolsize=1)[1])

    def private_pem(self) -> bytes:
        return self._key.save_pkcs1()

    def decrypt_raw(self, block: bytes) -> int:
        """Textbook RSA (no padding scheme), as Telegram's old p_q_inner_data encryption needs; uses CRT."""
        k = self._key
        c = int.from_bytes(block, "big")
        if c >= k.n:
            raise ValueError("RSA block out of range")
        m1, m2 = pow(c, k.exp1, k.p), pow(c, k.exp2, k.q)
        return m2 + k.q * ((k.coef * (m1 - m2)) % k.p)


def load_or_create(state_dir: Path | None) -> SandboxRsaKey:
    """The key kept in `state_dir` (created, mode 0600, on first use), or the process's in-memory key."""
    if state_dir is None:
        return _memory_key()
    path = Path(state_dir) / KEY_FILE
    if path.exists():
        return SandboxRsaKey(rsa.PrivateKey.load_pkcs1(path.read_bytes()))
    key = SandboxRsaKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_pem())
    os.replace(tmp, path)
    return key


@functools.cache
def _memory_key() -> SandboxRsaKey:
    return SandboxRsaKey.generate()
