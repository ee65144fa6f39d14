"""upload.getFile: the hot path of every download and benchmark, so it checks and answers without
detours. Rules (DESIGN.md, as Telegram enforces them):
    not precise: offset % 4096 == 0, limit % 4096 == 0, 1 MiB % limit == 0
    precise:     offset % 1024 == 0, limit % 1024 == 0, 0 < limit <= 1 MiB
    always:      the part stays inside one MiB; a bad offset is OFFSET_INVALID, anything else LIMIT_INVALID
then the file (FILE_ID_INVALID / LOCATION_INVALID), its DC (303 FILE_MIGRATE_X), its reference
(FILE_REFERENCE_*), and min(limit, size - offset) bytes back (none past the end).
The rate rule (ratelimit.py) is checked first, as Telegram counts every call.

upload.saveFilePart / upload.saveBigFilePart keep parts per (account, DC, file_id) in the PartStore
(parts.py, which holds the size and numbering rules); any DC the account is logged in on takes them,
but only sendMedia on that same DC finds them (clients upload to the home DC). Their own rate rule (`upload_rate_limit`) is checked first. Counters: upload_parts,
upload_bytes (parts kept), upload_parts_lost (parts dropped by a file_part_missing fault).
"""

from __future__ import annotations

from dataclasses import dataclass

from telethon.tl import functions, types

from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.services.state import State
from tgdav.sandbox.world import Source

MIB = 1 << 20


def check_part(offset: int, limit: int, precise: bool) -> None:
    align = 1024 if precise else 4096
    if offset < 0 or offset % align:
        raise RpcError(400, "OFFSET_INVALID")
    if limit <= 0 or limit % align or limit > MIB or (not precise and MIB % limit):
        raise RpcError(400, "LIMIT_INVALID")
    if offset // MIB != (offset + limit - 1) // MIB:
        raise RpcError(400, "LIMIT_INVALID")


@dataclass(frozen=True)
class _Target:
    kind: str
    id: int
    dc: int
    size: int
    source: Source
    mtime: int
    storage: types.TypeFileType


_STORAGE = {"image/jpeg": types.storage.FileJpeg(), "image/png": types.storage.FilePng(),
            "image/gif": types.storage.FileGif(), "image/webp": types.storage.FileWebp()}


def _locate(s: State, location) -> _Target:
    if isinstance(location, types.InputDocumentFileLocation):
        doc = s.world.documents.get(location.id)
        if doc is None or doc.access_hash != location.access_hash:
            raise RpcError(400, "FILE_ID_INVALID")
        if location.thumb_size:
            raise RpcError(400, "LOCATION_INVALID")
        return _Target("document", doc.id, doc.true_dc, doc.size, doc.source, doc.date,
                       types.storage.FileUnknown())
    if isinstance(location, types.InputPhotoFileLocation):
        photo = s.world.photos.get(location.id)
        if photo is None or photo.access_hash != location.access_hash:
            raise RpcError(400, "FILE_ID_INVALID")
        size = photo.size(location.thumb_size)
        if size is None:
            raise RpcError(400, "LOCATION_INVALID")
        return _Target("photo", photo.id, photo.true_dc, size.size, size.source, photo.date,
                       _STORAGE.get(photo.mime, types.storage.FileUnknown()))
    raise RpcError(400, "LOCATION_INVALID")


def get_file(s: State, ctx: CallContext, req: functions.upload.GetFileRequest):
    account = s.user(ctx)
    per_second, seconds = s.controls.getfile_rate_rule()
    if per_second > 0:
        s.getfile_rate.check(account.id, ctx.dc_id, s.clock(), per_second, seconds)
    offset, limit = req.offset, req.limit
    check_part(offset, limit, bool(req.precise))
    target = _locate(s, req.location)
    if target.dc != ctx.dc_id:
        raise RpcError(303, f"FILE_MIGRATE_{target.dc}")
    s.references.check(target.kind, target.id, req.location.file_reference)
    data = target.source.read(offset, min(limit, target.size - offset)) if offset < target.size else b""
    s.counters.inc(ctx.dc_id, "getfile_bytes", len(data))
    return types.upload.File(type=target.storage, mtime=target.mtime, bytes=data)


def _save(s: State, ctx: CallContext, file_id: int, part: int, data: bytes, total: int | None) -> bool:
    account = s.user(ctx)
    per_second, seconds = s.controls.upload_rate_rule()
    if per_second > 0:
        s.upload_rate.check(account.id, ctx.dc_id, s.clock(), per_second, seconds)
    kept = s.parts.save(account.id, ctx.dc_id, file_id, part, data, total=total,
                        max_parts=s.controls.max_file_parts(account.premium))
    if kept:
        s.counters.inc(ctx.dc_id, "upload_parts")
        s.counters.inc(ctx.dc_id, "upload_bytes", len(data))
    else:
        s.counters.inc(ctx.dc_id, "upload_parts_lost")
    return True


def save_file_part(s: State, ctx: CallContext, req: functions.upload.SaveFilePartRequest):
    return _save(s, ctx, req.file_id, req.file_part, req.bytes, None)


def save_big_file_part(s: State, ctx: CallContext, req: functions.upload.SaveBigFilePartRequest):
    return _save(s, ctx, req.file_id, req.file_part, req.bytes, req.file_total_parts)


HANDLERS = {
    functions.upload.GetFileRequest: get_file,
    functions.upload.SaveFilePartRequest: save_file_part,
    functions.upload.SaveBigFilePartRequest: save_big_file_part,
}
