"""The WsgiDAV provider over the catalog (and, when writes are on, the writer): Root -> Channel
folder -> sub-folders -> File, one thin class per kind of thing.

Everything shown comes from catalog metadata (names, sizes, dates, etags); listing, HEAD and PROPFIND
never touch file bytes. GET and HEAD of files never reach this provider: dav.stream serves them.

Writes (when a `drive` is given; see tgdav/telegram/writer.py for what each does in Telegram):
- PUT: a new name gets a *pending* resource (nothing exists in Telegram until the upload is
  complete); begin_write() returns the writer's streaming upload, close() makes it visible (and only
  then removes an old version), a failure or a client that goes away leaves the old one as it was.
- MKCOL inside a channel: a folder marker message; at the root: a new private channel (unless
  switched off). DELETE: the messages go, a folder with everything in it.
- MOVE inside one channel: tag edits only (move_recursive), never a re-upload; COPY, and MOVE across
  channels: the same documents sent again at the destination, then (MOVE) the source goes. A folder
  goes whole (handle_copy / handle_move: writer.copy_folder), never member by member.
- A channel the account may not post in answers writes 403 with the reason.
- Finder's and Explorer's own files (._*, .DS_Store, desktop.ini, ...) are kept in the local state
  directory (`local_dir`), never uploaded; they are not listed, only found by name.
Dead properties and locks are WsgiDAV's own managers (configured in dav/server.py).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from wsgidav import util
from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_CREATED, HTTP_FORBIDDEN, DAVError
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider
from wsgidav.lock_man.lock_manager import normalize_lock_root

from tgdav import text
from tgdav.dav.guard import NEVER_DELETED
from tgdav.dav.policy import READ_METHODS, TARGET_KEY, Refusal, RequestBodyTooLarge, dav_error, is_probe
from tgdav.errors import Forbidden
from tgdav.model import Catalog, FileEntry, Folder, Target
from tgdav.telegram import names

_MIME = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*", re.ASCII)


def content_type(entry: FileEntry) -> str:
    """The entry's MIME type if it is a plain type/subtype; senders choose it, so nothing else passes
    into a header."""
    return entry.mime if _MIME.fullmatch(entry.mime or "") else "application/octet-stream"


def _join(*names: str) -> str:
    return "/" + "/".join(names)


def is_local_name(name: str) -> bool:
    """Files desktop clients write for themselves: kept locally, never uploaded."""
    return is_probe(name)


class _Mapped:
    """`with _Mapped():` turns tgdav errors into DAVErrors with the right status."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None and isinstance(exc, Exception) and not isinstance(exc, DAVError):
            raise dav_error(exc) from exc
        return False


def check_name(name: str) -> None:
    """A file or folder name inside a channel: stored as sent unless one tag line cannot carry it,
    or it holds characters that text.safe would change (then it could not be listed as sent)."""
    why = names.unstorable(name) or (None if text.is_safe(name) else
                                     "it holds a control, noncharacter or bidi control character")
    if why:
        raise dav_error(Forbidden(f"{name!r} cannot be stored: {why}"))


def check_channel_name(name: str) -> None:
    """A new channel's name: what names.clean keeps of a title (the name it will be listed under;
    this also keeps ':' out, so no channel shadows the reserved /:tgdav pages)."""
    if not name or names.clean(name) != name:
        raise dav_error(Forbidden(f"{name!r} cannot name a channel: a channel's name holds no / \\ < > : "
                                  "\" | ? * or control characters, does not end with a dot or space and "
                                  "is not a Windows device name (CON, NUL, ...)"))


class _LockRoots:
    """lockdiscovery (a LOCK's answer, PROPFIND) names the root of every lock on a resource, which
    WsgiDAV finds again by path and fails on with a 500 when it is gone: the file or folder was
    deleted or moved meanwhile (another replica's DELETE, a Telegram app). Such a lock protects
    nothing and goes, as a DELETE through tgdav removes its locks; a LOCK of the very resource that
    went is answered 409 in words (nothing is locked)."""

    def get_property_value(self, name: str):
        lm = self.provider.lock_manager
        if name == "{DAV:}lockdiscovery" and lm is not None:
            own, lost = normalize_lock_root(self.get_ref_url()), False
            for lock in lm.get_url_lock_list(self.get_ref_url()):
                if self.provider.get_resource_inst(self.provider.ref_url_to_path(lock["root"]),
                                                   self.environ) is None:
                    lm.release(lock["token"])
                    lost = lost or normalize_lock_root(lock["root"]) == own
            if lost and self.environ.get("REQUEST_METHOD") == "LOCK":
                raise Refusal(409, "it was deleted or moved while the lock was granted: nothing is locked")
        return super().get_property_value(name)


class RootResource(_LockRoots, DAVCollection):
    """/ : one collection per catalog folder."""

    def __init__(self, provider: "CatalogProvider", environ: dict) -> None:
        super().__init__("/", environ)
        self.catalog, self.drive = provider.catalog, provider.drive

    def get_member_names(self) -> list[str]:
        return [folder.name for folder in self.catalog.folders()]

    def get_member_list(self) -> list["FolderResource"]:
        return [FolderResource(self.provider, folder, (), None, self.environ) for folder in self.catalog.folders()]

    def get_member(self, name: str):
        folder = self.catalog.folder(name)
        return FolderResource(self.provider, folder, (), None, self.environ) if folder is not None else None

    def create_collection(self, name: str) -> None:
        if self.drive is None:
            raise Refusal(HTTP_FORBIDDEN, "this share is read-only")
        check_channel_name(name)
        with _Mapped():
            self.drive.create_channel(name)

    def create_empty_resource(self, name: str):
        raise Refusal(HTTP_FORBIDDEN, "files live inside channels: put them in a channel's folder")

    def support_recursive_delete(self) -> bool:
        return True          # so WsgiDAV calls delete() (a refusal), never member by member

    def delete(self):
        raise dav_error(Forbidden(NEVER_DELETED))


class FolderResource(_LockRoots, DAVCollection):
    """/<channel>[/<folder>...] : a channel or a folder inside it."""

    def __init__(self, provider: "CatalogProvider", folder: Folder, path: tuple[str, ...], node,
                 environ: dict) -> None:
        super().__init__(_join(folder.name, *path), environ)
        self.catalog, self.drive, self.local = provider.catalog, provider.drive, provider.local
        self.folder, self.rel = folder, tuple(path)
        self._node = node

    @property
    def node(self):
        if self._node is None:
            node = self.catalog.node(self.folder, self.rel)
            self._node = node if node is not None and not isinstance(node, FileEntry) else _EmptyDir()
        return self._node

    def get_display_name(self) -> str:
        return self.rel[-1] if self.rel else self.folder.name

    def get_last_modified(self) -> float:
        if not self.rel:      # a channel: its last message's date, from the channel list (never its history)
            return self.folder.modified
        return getattr(self.node, "modified", 0) or self.folder.modified

    def get_etag(self):
        return None

    def _children(self):
        return self.node.dirs, self.node.files

    def get_member_names(self) -> list[str]:
        dirs, files = self._children()
        return list(dirs) + list(files)

    def get_member_list(self) -> list:
        dirs, files = self._children()
        return ([FolderResource(self.provider, self.folder, self.rel + (name,), d, self.environ)
                 for name, d in dirs.items()] +
                [FileResource(self.provider, self.folder, self.rel + (name,), e, self.environ)
                 for name, e in files.items()])

    def get_member(self, name: str):
        return self.provider.get_resource_inst(util.join_uri(self.path, name), self.environ)

    # --- writes -----------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.drive is None:
            raise Refusal(HTTP_FORBIDDEN, "this share is read-only")
        with _Mapped():
            self.drive.check(self.folder)

    def create_empty_resource(self, name: str):
        check_name(name)
        if self.local is not None and is_local_name(name):
            return self.local.create(self.provider, self.folder, self.rel + (name,), self.environ)
        self._check()
        if self.environ.get("REQUEST_METHOD") == "PUT":   # nothing exists until the upload is complete
            return FileResource(self.provider, self.folder, self.rel + (name,), None, self.environ)
        with _Mapped():                                   # LOCK of an unmapped URL: a real empty file
            self.drive.make_empty(self.folder, self.rel + (name,))
        made = self.provider.get_resource_inst(util.join_uri(self.path, name), self.environ)
        if made is None:           # the folder moved meanwhile: say so (WsgiDAV would fail with a 500)
            raise Refusal(409, "the folder changed while the file was made: try again")
        return made

    def create_collection(self, name: str) -> None:
        check_name(name)
        self._check()
        with _Mapped():
            self.drive.mkdir(self.folder, self.rel + (name,))

    def delete(self) -> None:
        if not self.rel:
            raise dav_error(Forbidden(NEVER_DELETED))
        self._check()
        with _Mapped():
            self.drive.delete(self.folder, self.rel)
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def support_recursive_delete(self) -> bool:
        return True

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        """COPY of a folder with Depth: 0: the folder alone (a whole folder goes with _copy_whole)."""
        folder, rel = self._destination(dest_path)
        if self.provider.get_resource_inst(dest_path, self.environ) is None:
            with _Mapped():
                self.drive.check(folder)
                self.drive.mkdir(folder, rel)
        _copy_props(self, dest_path, is_move, with_children=False)

    def support_recursive_move(self, dest_path: str) -> bool:
        return bool(self.rel) and _within_channel(self, dest_path)

    def handle_copy(self, dest_path: str, *, depth_infinity: bool):
        """COPY of a folder with everything in it (Depth: infinity), in one step for every reader
        (writer.copy_folder: a hold, the copies, one edit; tgdav/telegram/tree.py): WsgiDAV would go
        member by member, and a failure or a crash in the middle would leave half a folder."""
        if self.drive is None or not depth_infinity:
            return False
        return self._copy_whole(dest_path, move=False)

    def handle_move(self, dest_path: str):
        """MOVE onto an existing folder of the same channel (Overwrite: T) in one step (one journal
        post, tgdav/telegram/tree.py): WsgiDAV would delete the destination first, and readers would
        see no folder there for a moment (or for good, after a failure). Answers 204. A MOVE to
        another channel is a whole copy, then the source's deletion (`_copy_whole`)."""
        if self.drive is None:
            return False
        if not self.support_recursive_move(dest_path):
            return self._copy_whole(dest_path, move=True)
        dest = self.provider.get_resource_inst(dest_path, self.environ)
        if not isinstance(dest, FolderResource) or not _overwrite(self):
            return False
        self._check()
        _, rel = self.provider.split(dest_path)
        with _Mapped():
            self.drive.move(self.folder, self.rel, rel)
        dest.remove_all_properties(recursive=True)
        dest.remove_all_locks(recursive=True)
        _copy_props(self, dest_path, True, with_children=True)
        return True

    def move_recursive(self, dest_path: str):
        return _move_within_channel(self, dest_path, with_children=True)

    def _destination(self, dest_path: str) -> tuple[Folder, tuple[str, ...]]:
        """Where a COPY or MOVE of this folder goes (channel, path in it); refused when this is a
        whole channel or the destination would be one."""
        self._check()
        if not self.rel:
            raise Refusal(HTTP_FORBIDDEN, "a whole channel cannot be copied or moved")
        folder, rel = self.provider.split(dest_path)
        if not rel:
            raise Refusal(HTTP_FORBIDDEN, "a folder cannot become a channel")
        return folder, rel

    def _copy_whole(self, dest_path: str, *, move: bool):
        """The folder and everything in it copied to `dest_path` (any channel, replacing what is
        there) at once for every reader, then (move) deleted here. WsgiDAV answers True with 204;
        a new destination answers 201 through WsgiDAV's one-error list (its only way to say so)."""
        folder, rel = self._destination(dest_path)
        dest = self.provider.get_resource_inst(dest_path, self.environ)
        with _Mapped():
            self.drive.check(folder)
            self.drive.copy_folder(self.folder, self.rel, folder, rel, move, overwrite=_overwrite(self))
        if dest is not None:
            dest.remove_all_properties(recursive=True)
            if move:
                dest.remove_all_locks(recursive=True)
        if move:
            self.remove_all_locks(recursive=True)
        _copy_props(self, dest_path, move, with_children=True)
        return True if dest is not None else [(self.get_href(), DAVError(HTTP_CREATED))]


def _within_channel(resource, dest_path: str) -> bool:
    """A MOVE of a folder or file to a path inside its own channel: a caption edit, no upload."""
    try:
        folder, rel = resource.provider.split(dest_path)
    except DAVError:
        return False
    return folder.channel_id == resource.folder.channel_id and bool(rel)


def _overwrite(resource) -> bool:
    """The request's Overwrite header (T unless F). WsgiDAV checks it before the writer's path lock;
    the writer checks again under it, so a write landing in between is 412, never replaced."""
    return resource.environ.get("HTTP_OVERWRITE", "T").strip().upper() != "F"


def _move_within_channel(resource, dest_path: str, *, with_children: bool) -> list:
    resource._check()
    _, rel = resource.provider.split(dest_path)
    with _Mapped():
        resource.drive.move(resource.folder, resource.rel, rel, overwrite=_overwrite(resource))
    _copy_props(resource, dest_path, True, with_children=with_children)
    return []


class _EmptyDir:
    """A folder with nothing (known) in it: one deleted meanwhile."""

    def __init__(self) -> None:
        self.dirs, self.files, self.modified = {}, {}, 0.0


class FileResource(_LockRoots, DAVNonCollection):
    """A file: one file-bearing message (or several pieces), described from its FileEntry.
    entry None: a PUT to a new name, not in Telegram until its upload completes."""

    def __init__(self, provider: "CatalogProvider", folder: Folder, path: tuple[str, ...],
                 entry: FileEntry | None, environ: dict) -> None:
        # the URL (locks, properties) is the name as shown; `rel`, the name asked for, is what a
        # write stores (names are one file under any spelling: tgdav.telegram.tree.key)
        shown = tuple(path[:-1]) + (entry.name,) if entry is not None and path else tuple(path)
        super().__init__(_join(folder.name, *shown), environ)
        self.catalog, self.drive = provider.catalog, provider.drive
        self.folder, self.rel, self.entry = folder, tuple(path), entry
        self._upload = None

    def get_display_name(self) -> str:
        return self.rel[-1]

    def get_content_length(self) -> int:
        return self.entry.size if self.entry else 0

    def get_content_type(self) -> str:
        return content_type(self.entry) if self.entry else "application/octet-stream"

    def get_creation_date(self) -> float:
        return self.entry.created if self.entry else 0

    def get_last_modified(self) -> float:
        return self.entry.modified if self.entry else 0

    def get_etag(self):
        """Unquoted, as WsgiDAV's header code wants it; the getetag property is quoted below."""
        return self.entry.etag.strip('"') if self.entry else None

    def get_property_value(self, name: str):
        if name == "{DAV:}getetag" and self.entry:
            return f'"{self.get_etag()}"'
        return super().get_property_value(name)

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self):
        """Never called: dav.stream answers every GET of a file before WsgiDAV sees it."""
        raise NotImplementedError("file bodies are served by tgdav.dav.stream.StreamApp")

    # --- writes -----------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.drive is None:
            raise Refusal(HTTP_FORBIDDEN, "this share is read-only")
        with _Mapped():
            self.drive.check(self.folder)

    def begin_write(self, *, content_type=None):
        self._check()
        lock_man = self.provider.lock_manager
        if self.entry is not None and self.rel[-1] != self.entry.name and lock_man is not None \
                and lock_man.get_url_lock_list(self.get_ref_url()):
            self.rel = self.rel[:-1] + (self.entry.name,)     # a locked file keeps the name its lock holds
        size = None
        if "chunked" not in self.environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            try:
                size = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise Refusal(HTTP_BAD_REQUEST, "Content-Length is not a number") from None
        with _Mapped():
            self._upload = self.drive.open_upload(self.folder, self.rel, size)
        # WsgiDAV's PUT turns what writing raises into a DAVError keeping it as src_exception, and
        # policy.error_reply answers from that: the upload's errors need no mapping here
        return self._upload

    def end_write(self, *, with_errors: bool) -> None:
        if with_errors and self._upload is not None:
            self._upload.abort()
        self._upload = None
        if not with_errors:   # show the new version (its etag) in PUT's answer
            entry = self.catalog.node(self.folder, self.rel)
            if isinstance(entry, FileEntry):
                self.entry = entry

    def delete(self) -> None:
        self._check()
        with _Mapped():
            self.drive.delete(self.folder, self.rel)
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        """COPY anywhere, or MOVE to another channel (WsgiDAV deletes the source after)."""
        folder, rel = self.provider.split(dest_path)
        if not rel:
            raise Refusal(HTTP_FORBIDDEN, "files live inside channels")
        with _Mapped():
            self.drive.check(folder)
            self.drive.copy(self.folder, self.entry, folder, rel, overwrite=_overwrite(self))
        _copy_props(self, dest_path, is_move, with_children=False)

    def support_recursive_move(self, dest_path: str) -> bool:
        return _within_channel(self, dest_path)

    def move_recursive(self, dest_path: str):
        return _move_within_channel(self, dest_path, with_children=False)

    def _existing_file(self, dest_path: str) -> "FileResource | None":
        if not _overwrite(self):    # WsgiDAV found no destination: one there now is a 412 (the writer's)
            return None
        dest = self.provider.get_resource_inst(dest_path, self.environ)
        return dest if isinstance(dest, FileResource) and dest.entry is not None else None

    def handle_move(self, dest_path: str) -> bool:
        """MOVE onto an existing file (Overwrite: T) in one step, so the name always holds a whole
        file: WsgiDAV would delete the destination first (and a failure or a crash after that would
        lose it). Inside a channel a caption edit; across channels the copy replaces the destination,
        then the source goes. Answers 204."""
        if self.drive is None:
            return False
        dest = self._existing_file(dest_path)
        if dest is None:
            return False
        self._check()
        folder, rel = self.provider.split(dest_path)
        with _Mapped():
            if self.support_recursive_move(dest_path):
                self.drive.move(self.folder, self.rel, rel)
            else:
                self.drive.check(folder)
                self.drive.copy(self.folder, self.entry, folder, rel)
                self.drive.delete(self.folder, self.rel)
        dest.remove_all_properties(recursive=False)
        dest.remove_all_locks(recursive=False)
        _copy_props(self, dest_path, True, with_children=False)
        return True

    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        """COPY onto an existing file (Overwrite: T): the copy replaces it in one step (the same
        document sent again, then the old version deleted), never delete-then-copy. Answers 204."""
        if self.drive is None:
            return False
        dest = self._existing_file(dest_path)
        if dest is None:
            return False
        folder, rel = self.provider.split(dest_path)
        with _Mapped():
            self.drive.check(folder)
            self.drive.copy(self.folder, self.entry, folder, rel)
        dest.remove_all_properties(recursive=False)
        _copy_props(self, dest_path, False, with_children=False)
        return True


def _copy_props(res, dest_path: str, is_move: bool, *, with_children: bool) -> None:
    props = res.provider.prop_manager
    if not props:
        return
    dest = dest_path.rstrip("/") + ("/" if res.is_collection else "")
    dest_url = util.quote(res.provider.share_path + dest)
    if is_move:
        props.move_properties(res.get_ref_url(), dest_url, with_children=with_children, environ=res.environ)
        return
    props.copy_properties(res.get_ref_url(), dest_url, res.environ)
    if with_children and res.is_collection:     # a whole folder's copy: each member's, as WsgiDAV would
        base = res.path.rstrip("/")
        for child in res.get_descendants(add_self=False):
            _copy_props(child, dest_path.rstrip("/") + child.path[len(base):], False, with_children=False)


# --- the local store of desktop clients' own files --------------------------------------------------
LOCAL_FILE_LIMIT = 16 * 1024 * 1024   # bytes: AppleDouble files, Thumbs.db, folder.jpg fit


class LocalFiles:
    """Finder's ._* / .DS_Store and Explorer's desktop.ini, kept in `root`/<channel id>/<path>,
    each at most LOCAL_FILE_LIMIT bytes (a bigger one is 413 and leaves nothing)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, folder: Folder, rel: tuple[str, ...]) -> Path:
        return self.root.joinpath(str(folder.channel_id), *rel)

    def find(self, provider, folder: Folder, rel: tuple[str, ...], environ: dict):
        p = self.path_of(folder, rel)
        return LocalFileResource(provider, folder, rel, p, environ) if p.is_file() else None

    def create(self, provider, folder: Folder, rel: tuple[str, ...], environ: dict):
        p = self.path_of(folder, rel)
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if environ.get("REQUEST_METHOD") != "PUT":     # a PUT's file exists once its body is whole
            p.touch()
        return LocalFileResource(provider, folder, rel, p, environ)


def _too_big_local() -> DAVError:
    exc = RequestBodyTooLarge(f"a desktop client's own file (kept on this server, not in Telegram) "
                              f"is limited to {LOCAL_FILE_LIMIT // 2**20} MiB")
    return dav_error(exc)


class _Capped:
    """A file that refuses to grow past `limit` bytes."""

    def __init__(self, file, limit: int) -> None:
        self._file, self._left = file, limit

    def write(self, data: bytes) -> int:
        self._left -= len(data)
        if self._left < 0:
            raise _too_big_local()
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()


class LocalFileResource(_LockRoots, DAVNonCollection):
    def __init__(self, provider, folder: Folder, rel: tuple[str, ...], file: Path, environ: dict) -> None:
        super().__init__(_join(folder.name, *rel), environ)
        self.folder, self.rel, self.file = folder, rel, file

    def _stat(self):
        try:
            return self.file.stat()
        except FileNotFoundError:          # a PUT to a new name, its body not yet whole
            return os.stat_result((0,) * 10)

    def get_content_length(self) -> int:
        return self._stat().st_size

    def get_content_type(self) -> str:
        return "application/octet-stream"

    def get_creation_date(self) -> float:
        return self._stat().st_mtime

    def get_last_modified(self) -> float:
        return self._stat().st_mtime

    def get_display_name(self) -> str:
        return self.rel[-1]

    def get_etag(self):
        st = self._stat()
        return f"l{st.st_ino:x}-{st.st_size:x}-{int(st.st_mtime * 1000):x}"

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self):
        return open(self.file, "rb")

    def begin_write(self, *, content_type=None):
        try:
            announced = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            announced = 0
        if announced > LOCAL_FILE_LIMIT:
            raise _too_big_local()
        fd, tmp = tempfile.mkstemp(dir=self.file.parent, prefix=".tgdav-")
        self._tmp = tmp
        self._out = _Capped(os.fdopen(fd, "wb"), LOCAL_FILE_LIMIT)
        return self._out

    def end_write(self, *, with_errors: bool) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is None:
            return
        if with_errors:
            self._out.close()
            os.unlink(tmp)
        else:
            os.replace(tmp, self.file)
        self._tmp = None

    def delete(self) -> None:
        self.file.unlink(missing_ok=True)
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        folder, rel = self.provider.split(dest_path)
        if not rel or not is_local_name(rel[-1]):
            raise Refusal(HTTP_FORBIDDEN, "a desktop client's own file stays local")
        dest = self.provider.local.path_of(folder, rel)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(self.file, dest)
        _copy_props(self, dest_path, is_move, with_children=False)

    def support_recursive_move(self, dest_path: str) -> bool:
        return False


class CatalogProvider(DAVProvider):
    """Resolves a URL-decoded path to Root, a folder or a file; unknown paths are None (404).
    `drive` (a telegram.writer.SyncWriter) makes it writable; None keeps it read-only."""

    def __init__(self, catalog: Catalog, drive=None, local: LocalFiles | None = None) -> None:
        super().__init__()
        self.catalog, self.drive, self.local = catalog, drive, local

    def is_readonly(self) -> bool:
        return self.drive is None

    def split(self, path: str) -> tuple[Folder, tuple[str, ...]]:
        """(channel folder, path inside it) of an existing channel, every name one that can be
        stored (403 with the reason otherwise); 409 when there is no such channel."""
        parts = [n for n in util.to_str(path).split("/") if n]
        folder = self.catalog.folder(parts[0]) if parts else None
        if folder is None:
            raise Refusal(409, "the destination must be inside an existing channel")
        for name in parts[1:]:
            check_name(name)
        return folder, tuple(parts[1:])

    def get_resource_inst(self, path: str, environ: dict):
        names = [name for name in util.to_str(path).split("/") if name]
        if not names:
            return RootResource(self, environ)
        # a request that only reads shares the look-ups of its own path with the layers above
        # (dav.policy.target); a write looks again: it changes what the path names as it goes
        found = environ.get(TARGET_KEY) if environ.get("REQUEST_METHOD") in READ_METHODS else None
        if found is None or found.catalog is not self.catalog or list(found.names) != names:
            found = Target(self.catalog, names)
            if environ.get("REQUEST_METHOD") in READ_METHODS and TARGET_KEY not in environ:
                environ[TARGET_KEY] = found
        rel = tuple(names[1:])
        local = bool(rel) and self.local is not None and is_local_name(rel[-1])
        node = found.node if rel and not local else None      # with the channel, in one look-up
        folder = found.folder
        if folder is None:
            return None
        if not rel:       # the channel itself: its listing is read when asked for
            return FolderResource(self, folder, (), None, environ)
        if local:
            return self.local.find(self, folder, rel, environ)
        if node is None:
            return None
        if isinstance(node, FileEntry):
            return FileResource(self, folder, rel, node, environ)
        return FolderResource(self, folder, rel, node, environ)
