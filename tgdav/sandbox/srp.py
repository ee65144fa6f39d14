"""The server side of Telegram's 2FA check: SRP-2048 with the KDF
PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow (https://core.telegram.org/api/srp).

The client side is telethon/password.py (compute_check). The server keeps only the verifier
v = g^x mod p, hands out B = k*v + g^b for a fresh secret b, and checks the client's proof M1.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from telethon.tl import types

# Telegram's 2048-bit safe prime with g = 3 (the one clients accept without a primality test).
PRIME = bytes.fromhex(
    "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F"
    "48198A0AA7C14058229493D22530F4DBFA336F6E0AC925139543AED44CCE7C37"
    "20FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"
    "2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4"
    "A4A695811051907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754"
    "FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"
    "E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F"
    "0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B")
G = 3
_P = int.from_bytes(PRIME, "big")
_SIZE = 256


def _sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def _pad(n: int) -> bytes:
    return n.to_bytes(_SIZE, "big")


@dataclass(frozen=True)
class PasswordVerifier:
    """What the server stores for a cloud password: the salts and v = g^x mod p."""
    salt1: bytes
    salt2: bytes
    v: int

    @classmethod
    def create(cls, password: str, salt1: bytes, salt2: bytes) -> "PasswordVerifier":
        hash1 = _sha256(salt1, password.encode("utf-8"), salt1)
        hash2 = _sha256(salt2, hash1, salt2)
        hash3 = hashlib.pbkdf2_hmac("sha512", hash2, salt1, 100000)
        x = int.from_bytes(_sha256(salt2, hash3, salt2), "big")
        return cls(salt1, salt2, pow(G, x, _P))

    @property
    def algo(self) -> types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow:
        return types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
            salt1=self.salt1, salt2=self.salt2, g=G, p=PRIME)


@dataclass(frozen=True)
class Challenge:
    """One account.getPassword answer: the secret b and the public B sent as srp_B."""
    b: int
    B: bytes


_K = int.from_bytes(_sha256(PRIME, _pad(G)), "big")


def _good(n: int) -> bool:
    """Telethon's is_good_mod_exp_first: far enough from 0 and from p."""
    return n.bit_length() >= 2048 - 64 and (_P - n).bit_length() >= 2048 - 64 and n < _P


def challenge(verifier: PasswordVerifier) -> Challenge:
    while True:
        b = int.from_bytes(os.urandom(_SIZE), "big")
        g_b = pow(G, b, _P)
        B = (_K * verifier.v + g_b) % _P
        if _good(g_b) and B > 0:
            return Challenge(b, _pad(B))


def verify(verifier: PasswordVerifier, ch: Challenge, A_bytes: bytes, M1: bytes) -> bool:
    """Whether the client's (A, M1) proves it knows the password behind `verifier`."""
    A = int.from_bytes(A_bytes, "big")
    if not 0 < A < _P or len(A_bytes) > _SIZE:
        return False
    a_for_hash = _pad(A)
    u = int.from_bytes(_sha256(a_for_hash, ch.B), "big")
    if u == 0:
        return False
    S = pow(A * pow(verifier.v, u, _P) % _P, ch.b, _P)
    K = _sha256(_pad(S))
    expected = _sha256(bytes(x ^ y for x, y in zip(_sha256(PRIME), _sha256(_pad(G)))),
                       _sha256(verifier.salt1), _sha256(verifier.salt2), a_for_hash, ch.B, K)
    return hmac.compare_digest(expected, M1)
