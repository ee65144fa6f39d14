"""A read-only WsgiDAV provider over the catalog: Root -> Folder -> File, one thin class per level.

Everything shown comes from catalog metadata (names, sizes, dates, etags); listing, HEAD and PROPFIND
never touch file bytes. Properties are kept lean (no locks, no dead properties) because Explorer
gives up on PROPFIND replies over ~1 MB and big channels have many files. GET and HEAD of files never
reach this provider: dav.stream serves them (see its docstring for why).
"""

from __future__ import annotations

import re

from wsgidav import util
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider

from tgdav.model import Catalog, FileEntry, Folder


_MIME = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*", re.ASCII)


def content_type(entry: FileEntry) -> str:
    """The entry's MIME type if it is a plain type/subtype; senders choose it, so nothing else passes
    into a header."""
    return entry.mime if _MIME.fullmatch(entry.mime or "") else "application/octet-stream"


def _join(*names: str) -> str:
    return "/" + "/".join(names)


class RootResource(DAVCollection):
    """/ : one collection per catalog folder."""

    def __init__(self, catalog: Catalog, environ: dict) -> None:
        super().__init__("/", environ)
        self.catalog = catalog

    def get_member_names(self) -> list[str]:
        return [folder.name for folder in self.catalog.folders()]

    def get_member_list(self) -> list[FolderResource]:
        return [FolderResource(self.catalog, folder, self.environ) for folder in self.catalog.folders()]

    def get_member(self, name: str) -> FolderResource | None:
        folder = self.catalog.folder(name)
        return FolderResource(self.catalog, folder, self.environ) if folder is not None else None


class FolderResource(DAVCollection):
    """/<folder> : one channel, its files as members."""

    def __init__(self, catalog: Catalog, folder: Folder, environ: dict) -> None:
        super().__init__(_join(folder.name), environ)
        self.catalog, self.folder = catalog, folder

    def get_display_name(self) -> str:
        return self.folder.name

    def get_last_modified(self) -> float:
        return self.folder.modified

    def get_member_names(self) -> list[str]:
        return [entry.name for entry in self.catalog.entries(self.folder)]

    def get_member_list(self) -> list[FileResource]:
        return [FileResource(self.folder, entry, self.environ) for entry in self.catalog.entries(self.folder)]

    def get_member(self, name: str) -> FileResource | None:
        entry = self.catalog.entry(self.folder, name)
        return FileResource(self.folder, entry, self.environ) if entry is not None else None


class FileResource(DAVNonCollection):
    """/<folder>/<file> : one file-bearing message, described from its FileEntry."""

    def __init__(self, folder: Folder, entry: FileEntry, environ: dict) -> None:
        super().__init__(_join(folder.name, entry.name), environ)
        self.entry = entry

    def get_display_name(self) -> str:
        return self.entry.name

    def get_content_length(self) -> int:
        return self.entry.size

    def get_content_type(self) -> str:
        return content_type(self.entry)

    def get_creation_date(self) -> float:
        return self.entry.created

    def get_last_modified(self) -> float:
        return self.entry.modified

    def get_etag(self) -> str:
        """Unquoted, as WsgiDAV's header code wants it; the getetag property is quoted below."""
        return self.entry.etag.strip('"')

    def get_property_value(self, name: str):
        if name == "{DAV:}getetag":
            return f'"{self.get_etag()}"'
        return super().get_property_value(name)

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self):
        """Never called: dav.stream answers every GET of a file before WsgiDAV sees it."""
        raise NotImplementedError("file bodies are served by tgdav.dav.stream.StreamApp")


class CatalogProvider(DAVProvider):
    """Resolves a URL-decoded path to Root, Folder or File; unknown paths are None (404)."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        self.catalog = catalog

    def is_readonly(self) -> bool:
        return True

    def get_resource_inst(self, path: str, environ: dict):
        names = [name for name in util.to_str(path).split("/") if name]
        if not names:
            return RootResource(self.catalog, environ)
        folder = self.catalog.folder(names[0])
        if folder is None or len(names) > 2:
            return None
        if len(names) == 1:
            return FolderResource(self.catalog, folder, environ)
        entry = self.catalog.entry(folder, names[1])
        return FileResource(folder, entry, environ) if entry is not None else None
