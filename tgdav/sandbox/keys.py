"""Auth keys the sandbox knows, per DC, and the account each one is logged in as.

The handshake (proto/) adds keys; auth.signIn / importBotAuthorization / importAuthorization bind a key
to a user; logOut unbinds it. With a state dir the store is persisted (keys.json, owner-only), so a
restarted sandbox still knows the keys its clients kept in their sessions, as Telegram does.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from telethon.crypto import AuthKey


@dataclass
class KeyRecord:
    dc_id: int
    key: bytes
    user_id: int | None = None
    unused: bool = False     # made by a handshake of this process, not yet used by its client


def key_id_of(key: bytes) -> int:
    """The 64-bit auth_key_id (low 64 bits of SHA1(key)), unsigned, as it appears on the wire."""
    return AuthKey(key).key_id


class AuthKeyStore:
    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._path = Path(path) if path else None
        self._keys: dict[int, KeyRecord] = {}
        if self._path and self._path.exists():
            try:
                for kid, rec in json.loads(self._path.read_text()).items():
                    self._keys[int(kid)] = KeyRecord(rec["dc_id"], bytes.fromhex(rec["key"]), rec.get("user_id"))
            except (ValueError, KeyError, TypeError):
                self._keys = {}   # a broken file only costs clients a new handshake

    def add(self, dc_id: int, key: bytes) -> int:
        kid = key_id_of(key)
        with self._lock:
            self._keys[kid] = KeyRecord(dc_id, key, unused=True)
            self._save()
        return kid

    def first_use(self, key_id: int) -> bool:
        """True once for a key a handshake of this process made: the first time its client uses it."""
        with self._lock:
            record = self._keys.get(key_id)
            if record is None or not record.unused:
                return False
            record.unused = False
            return True

    def get(self, key_id: int) -> KeyRecord | None:
        with self._lock:
            return self._keys.get(key_id)

    def bind(self, key_id: int, user_id: int) -> None:
        with self._lock:
            self._keys[key_id].user_id = user_id
            self._save()

    def unbind(self, key_id: int) -> None:
        with self._lock:
            if key_id in self._keys:
                self._keys[key_id].user_id = None
                self._save()

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def _save(self) -> None:
        if not self._path:
            return
        data = {str(k): {"dc_id": r.dc_id, "key": r.key.hex(), "user_id": r.user_id} for k, r in self._keys.items()}
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self._path)
