"""Counters per DC, the sandbox's answer to "what did the client actually ask for".

Names in use (add new ones freely, keep these stable: tests and benchmarks read them):
    connections            TCP connections accepted
    connections_closed     of those, the ones that have ended (either side closed): the difference is
                           what is open now
    transport:<name>       connections by the MTProto transport their first bytes chose: full,
                           intermediate, padded-intermediate, abridged
    auth_keys              auth keys created by a DH exchange and then used by their client (about
                           one exchange in 256 makes a key Telethon computes otherwise and never
                           uses: it starts another; see proto/handshake.py)
    packets                encrypted packets received from clients (one per container, whatever it holds)
    packets_acks_only      of those, the ones that held nothing but a msgs_ack
    acks_sent              msgs_ack the server sent on its own, for calls still unanswered after
                           server.ACK_AFTER seconds (an answer acknowledges its call otherwise)
    exports / imports      auth.exportAuthorization on this DC / auth.importAuthorization on this DC
    requests:<Name>        RPCs by TL request class name without "Request", e.g. requests:GetFileRequest
                           is counted as "requests:GetFile"
    getfile_bytes          bytes returned by upload.getFile
    dropped_answer_bytes   bytes of answers never sent because of an rpc_drop_answer (frames): what
                           crossed the link is getfile_bytes minus these (about)
    errors:<NAME>          RPC errors answered, by error name with the number replaced by X:
                           errors:FILE_MIGRATE_X, errors:FLOOD_WAIT_X, errors:LIMIT_INVALID, ...
    upload_parts           upload parts kept (saveFilePart + saveBigFilePart), on the DC that got them
    upload_bytes           bytes of those parts
    upload_parts_lost      parts acknowledged but dropped by a file_part_missing fault
    documents_created      documents made from uploads, on the DC that holds them (the uploader's home)
    messages_sent          messages posted by sendMedia / sendMessage, on the DC that answered
    messages_edited        messages.editMessage that changed a message
    messages_deleted       messages removed by channels.deleteMessages (one per message)
    messages_forwarded     copies made by messages.forwardMessages (one per message)
    channels_created       channels.createChannel
    channels_renamed       channels.editTitle
    channels_deleted       channels.deleteChannel
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict


class Counters:
    """Thread-safe: the admin HTTP thread reads while the loop thread writes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_dc: dict[int, Counter] = defaultdict(Counter)

    def inc(self, dc_id: int, name: str, n: int = 1) -> None:
        with self._lock:
            self._by_dc[dc_id][name] += n

    def get(self, dc_id: int, name: str) -> int:
        with self._lock:
            return self._by_dc[dc_id][name] if dc_id in self._by_dc else 0

    def total(self, name: str) -> int:
        with self._lock:
            return sum(c[name] for c in self._by_dc.values())

    def snapshot(self) -> dict[str, dict[str, int]]:
        """{"<dc>": {"name": n, ...}, ...}, JSON-ready."""
        with self._lock:
            return {str(dc): dict(c) for dc, c in sorted(self._by_dc.items())}

    def reset(self) -> None:
        with self._lock:
            self._by_dc.clear()
