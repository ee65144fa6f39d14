"""2FA state between the steps of a login: which auth keys passed the code and now owe a password,
the SRP challenges handed out by account.getPassword, and each account's verifier (computed once:
the KDF costs 100,000 PBKDF2 rounds).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

from telethon.tl import types

from tgdav.sandbox import srp
from tgdav.sandbox.context import RpcError
from tgdav.sandbox.world import Account

_MAX_CHALLENGES = 1024


class Passwords:
    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._verifiers: dict[tuple[int, str], srp.PasswordVerifier] = {}
        self._awaiting: dict[int, int] = {}                    # auth key id -> account id
        self._challenges: OrderedDict[int, tuple[int, srp.Challenge]] = OrderedDict()

    def await_password(self, auth_key_id: int, account: Account) -> None:
        with self._lock:
            self._awaiting[auth_key_id] = account.id

    def awaiting(self, auth_key_id: int) -> int | None:
        with self._lock:
            return self._awaiting.get(auth_key_id)

    def describe(self, account: Account) -> types.account.Password:
        """account.password for `account`: a fresh SRP challenge if it has a password."""
        new_algo = types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
            salt1=os.urandom(32), salt2=os.urandom(16), g=srp.G, p=srp.PRIME)
        common = dict(new_algo=new_algo,
                      new_secure_algo=types.SecurePasswordKdfAlgoPBKDF2HMACSHA512iter100000(os.urandom(8)),
                      secure_random=os.urandom(32))
        if account.password is None:
            return types.account.Password(has_password=False, **common)
        verifier = self._verifier(account)
        challenge = srp.challenge(verifier)
        srp_id = int.from_bytes(os.urandom(8), "big") >> 1
        with self._lock:
            self._challenges[srp_id] = (account.id, challenge)
            while len(self._challenges) > _MAX_CHALLENGES:
                self._challenges.popitem(last=False)
        return types.account.Password(has_password=True, current_algo=verifier.algo,
                                      srp_B=challenge.B, srp_id=srp_id, **common)

    def check(self, account: Account, check: types.InputCheckPasswordSRP) -> None:
        """Raise SRP_ID_INVALID / PASSWORD_HASH_INVALID unless `check` proves `account`'s password."""
        if not isinstance(check, types.InputCheckPasswordSRP):
            raise RpcError(400, "PASSWORD_HASH_INVALID")
        with self._lock:
            entry = self._challenges.pop(check.srp_id, None)
        if entry is None or entry[0] != account.id or account.password is None:
            raise RpcError(400, "SRP_ID_INVALID")
        if not srp.verify(self._verifier(account), entry[1], check.A, check.M1):
            raise RpcError(400, "PASSWORD_HASH_INVALID")

    def finish(self, auth_key_id: int) -> None:
        with self._lock:
            self._awaiting.pop(auth_key_id, None)

    def _verifier(self, account: Account) -> srp.PasswordVerifier:
        key = (account.id, account.password)
        with self._lock:
            verifier = self._verifiers.get(key)
        if verifier is None:
            salt = hashlib.sha512(f"tgdav-sandbox-salt:{self._seed}:{account.id}".encode()).digest()
            verifier = srp.PasswordVerifier.create(account.password, salt[:40], salt[40:56])
            with self._lock:
                self._verifiers[key] = verifier
        return verifier
