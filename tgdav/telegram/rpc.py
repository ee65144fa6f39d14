"""Telethon's RPC exceptions back into the error Telegram sent, parsed once (errors.RpcErrorRecord).

Telethon turns rpc_error into one exception class per error name and keeps neither the name nor
the number in a uniform place (FileMigrateError.new_dc, FloodWaitError.seconds, ...): its own tables
(rpc_errors_dict, rpc_errors_re) map names to classes, so they are read backwards here.
"""

from __future__ import annotations

from telethon.errors import rpcerrorlist

from tgdav.errors import RpcErrorRecord

_NAMES = {cls: name for name, cls in rpcerrorlist.rpc_errors_dict.items()}
_PATTERNS = {cls: regex for regex, cls in rpcerrorlist.rpc_errors_re}


def record_of(error: BaseException) -> RpcErrorRecord:
    """FileMigrateError(new_dc=4) -> RpcErrorRecord(303, "FILE_MIGRATE", 4, "FILE_MIGRATE_4")."""
    cls = type(error)
    code = getattr(error, "code", None) or 0
    if cls in _NAMES:
        return RpcErrorRecord.parse(code, _NAMES[cls])
    if cls in _PATTERNS:
        capture = error.__reduce__()[1][1]       # Telethon pickles these as (request, capture)
        return RpcErrorRecord.parse(code, _PATTERNS[cls].replace("(\\d+)", str(int(capture or 0))))
    return RpcErrorRecord.parse(code, getattr(error, "message", None) or str(error))
