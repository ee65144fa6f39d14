"""What a person sees in a browser: folder listings, an inline player, the status page, /metrics.

    /:tgdav/status         the status page (HTML, refreshes itself every second)
    /:tgdav/status.json    the same data as JSON
    /:tgdav/metrics        Prometheus text format (prometheus_client's generate_latest)
    /favicon.ico           tgdav's icon (unless a channel has that name)
    GET /  and  /<folder>/ a listing: name, size, date, kind; sortable; readable on a phone
    /<folder>/<sub>/...    a folder inside a channel (tgdav/telegram/tree.py), listed the same way
    /<folder>/?view=<name> a video or audio file in an HTML5 player, an image shown, with prev/next

The reserved prefix ":tgdav" cannot be a folder name: names.clean turns ':' into '_' in every
channel title (Windows cannot hold it), and Face answers the prefix before the catalog is asked, so
even a catalog that let it through could not shadow it (ReservedNames also hides such a folder).

Players get the file's own URL: the browser streams and seeks it with Range requests, which
dav.stream answers exactly. Everything is plain HTML/CSS and a few lines of JS, served from here,
behind the same authentication as the share (Face sits inside the Authenticator).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import struct
import time
import zlib
from datetime import datetime, timezone
from typing import Callable, Iterable
from urllib.parse import parse_qs, quote

from tgdav import text
from tgdav.dav.policy import Reply, StartResponse, request_names, target, text_reply
from tgdav.metrics import Metrics
from tgdav.model import Catalog, Dir, FileEntry, Folder

RESERVED = ":tgdav"
STATUS_PATH = f"/{RESERVED}/status"
METRICS_PATH = f"/{RESERVED}/metrics"

KINDS = (("video/", "video"), ("audio/", "audio"), ("image/", "image"), ("text/", "text"))
ARCHIVES = ("zip", "x-7z", "x-rar", "x-tar", "gzip", "x-bzip", "x-xz", "zstd")
SORTS = {"name": lambda e: e["name"].casefold(), "size": lambda e: (e["size"], e["name"].casefold()),
         "date": lambda e: (e["modified"], e["name"].casefold()),
         "kind": lambda e: (e["kind"], e["name"].casefold())}


def kind_of(mime: str) -> str:
    mime = (mime or "").lower()
    for prefix, kind in KINDS:
        if mime.startswith(prefix):
            return kind
    if mime == "application/pdf":
        return "pdf"
    if any(a in mime for a in ARCHIVES):
        return "archive"
    return "file"


def human_size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def human_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")


def human_seconds(s: float) -> str:
    s = int(s)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def href(*names: str, folder: bool = False) -> str:
    return "/" + "/".join(quote(n, safe="") for n in names) + ("/" if folder else "")


def e(value) -> str:
    """HTML-escaped, with what HTML cannot hold and bidi controls replaced (tgdav.text.safe)."""
    return html.escape(text.safe(str(value)), quote=True)


class ReservedNames:
    """A catalog without folders that would collide with the reserved prefix (compared as Windows
    and macOS compare names: case-insensitively)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    @staticmethod
    def reserved(name: str) -> bool:
        return name.casefold() == RESERVED

    def folders(self) -> list[Folder]:
        return [f for f in self._catalog.folders() if not self.reserved(f.name)]

    def folder(self, name: str) -> Folder | None:
        return None if self.reserved(name) else self._catalog.folder(name)

    def entries(self, folder: Folder) -> list[FileEntry]:
        return self._catalog.entries(folder)

    def entry(self, folder: Folder, name: str) -> FileEntry | None:
        return self._catalog.entry(folder, name)

    def node(self, folder: Folder, path: tuple[str, ...]) -> Dir | FileEntry | None:
        return self._catalog.node(folder, path)

    def resolve(self, names: tuple[str, ...]) -> tuple[Folder | None, Dir | FileEntry | None]:
        return (None, None) if names and self.reserved(names[0]) else self._catalog.resolve(names)


class Face:
    """WSGI middleware (inside auth and policy, before StreamApp and WsgiDAV): the reserved paths,
    and GET/HEAD of a collection as an HTML page. Everything else passes to `app`."""

    def __init__(self, app: Callable, catalog: Catalog, metrics: Metrics) -> None:
        self.app, self.catalog, self.metrics = app, catalog, metrics

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        names = request_names(environ)     # PolicyMiddleware already refused hostile paths
        method = environ["REQUEST_METHOD"]
        if names and names[0].casefold() == RESERVED:
            if method not in ("GET", "HEAD"):
                return text_reply("405 Method Not Allowed", "Only GET and HEAD here",
                                  [("Allow", "GET, HEAD")]).send(environ, start_response)
            return self.reserved(names[1:], environ).send(environ, start_response)
        if method in ("GET", "HEAD") and names == ["favicon.ico"] and target(environ, self.catalog).folder is None:
            return Reply("200 OK", [("Content-Type", "image/x-icon"), ("Cache-Control", "max-age=86400")],
                         FAVICON).send(environ, start_response)
        if method in ("GET", "HEAD") and len(names) <= 1:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            if not names:
                return self.root_page(query).send(environ, start_response)
            found = target(environ, self.catalog)
            node = found.node                   # with the channel, in one look-up
            if found.folder is not None:
                return self.folder_page(found.folder, query, (), node).send(environ, start_response)
        elif method in ("GET", "HEAD"):   # a folder inside a channel (a file: StreamApp, same look-ups)
            found = target(environ, self.catalog)
            if found.node is not None and not isinstance(found.node, FileEntry):
                query = parse_qs(environ.get("QUERY_STRING", ""))
                return self.folder_page(found.folder, query, tuple(names[1:]), found.node).send(
                    environ, start_response)
        return self.app(environ, start_response)

    # --- reserved paths -----------------------------------------------------------------------
    def reserved(self, rest: list[str], environ: dict) -> Reply:
        if not rest:
            return Reply("302 Found", [("Location", STATUS_PATH), ("Content-Type", "text/plain")],
                         f"tgdav's status page is at {STATUS_PATH}\n".encode())
        what = rest[0] if len(rest) == 1 else ""
        if what == "metrics":
            content_type, body = self.metrics.exposition()
            return Reply("200 OK", [("Content-Type", content_type), ("Cache-Control", "no-store")], body)
        if what == "status.json":
            return Reply("200 OK", [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
                         json.dumps(self.status_data()).encode())
        if what == "status":
            fragment = "fragment" in parse_qs(environ.get("QUERY_STRING", ""))
            body = self.status_body() if fragment else page("tgdav status", self.status_body(), STATUS_JS)
            return Reply("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                    ("Cache-Control", "no-store")] + PAGE_HEADERS, body.encode())
        return text_reply("404 Not Found", f"Not found: tgdav's pages are {STATUS_PATH} and {METRICS_PATH}")

    # --- listings -----------------------------------------------------------------------------
    def root_page(self, query: dict) -> Reply:
        rows = [{"name": f.name, "size": 0, "modified": f.modified, "kind": "folder", "title": f.title}
                for f in self.catalog.folders()]
        sort, descending = _sort_of(query, default="name")
        rows.sort(key=SORTS.get(sort, SORTS["name"]), reverse=descending)
        body = [f'<header><h1>tgdav</h1><a class="status" href="{STATUS_PATH}">status</a></header>',
                _sort_bar(sort, descending, ("name", "date")), '<ul class="list">']
        for r in rows:
            body.append(f'<li><a class="item" href="{e(href(r["name"], folder=True))}">'
                        f'<span class="icon">{ICONS["folder"]}</span><span class="name">{e(r["name"])}</span>'
                        f'<span class="meta">{e(human_date(r["modified"]))}</span></a></li>')
        if not rows:
            body.append('<li class="empty">No channels yet: this account reads none.</li>')
        body.append("</ul>")
        return _html(page("tgdav", "".join(body)))

    def folder_page(self, folder: Folder, query: dict, rel: tuple[str, ...] = (), node: Dir | None = None) -> Reply:
        """A channel (rel ()) or a folder inside it (`node`, else looked up): its folders, then its files."""
        node = node if node is not None else self.catalog.node(folder, rel)
        entries = list(node.files.values()) if node is not None else []
        dirs = [{"name": name, "size": 0, "modified": d.modified, "kind": "folder", "mime": ""}
                for name, d in (node.dirs.items() if node is not None else [])]
        rows = [{"name": x.name, "size": x.size, "modified": x.modified, "kind": kind_of(x.mime),
                 "mime": x.mime} for x in entries]
        sort, descending = _sort_of(query, default="date")
        rows.sort(key=SORTS.get(sort, SORTS["date"]), reverse=descending)
        viewing = (query.get("view") or [""])[0]
        up = href(folder.name, *rel[:-1], folder=True) if rel else "/"
        title = "/".join((folder.name, *rel))
        body = [f'<header><a class="up" href="{e(up)}" aria-label="up">&#8592;</a>'
                f'<h1>{e(title)}</h1><a class="status" href="{STATUS_PATH}">status</a></header>']
        current = next((r for r in rows if r["name"] == viewing), None)
        if current is not None:
            body.append(self._viewer(folder, current, rows, sort, descending, rel))
        body += [_sort_bar(sort, descending, ("name", "date", "size", "kind")), '<ul class="list">']
        for r in sorted(dirs, key=lambda d: d["name"].casefold()):
            body.append(f'<li><a class="item folder" href="{e(href(folder.name, *rel, r["name"], folder=True))}">'
                        f'<span class="icon">{ICONS["folder"]}</span><span class="name">{e(r["name"])}</span>'
                        f'<span class="meta">{e(human_date(r["modified"]))}</span></a></li>')
        for r in rows:
            url = href(folder.name, *rel, r["name"])
            viewable = r["kind"] in ("video", "audio", "image")
            link = (f"?view={quote(r['name'], safe='')}" + _sort_query(sort, descending)) if viewable else url
            chosen = ' aria-current="true"' if r is current else ""
            body.append(
                f'<li{chosen}><a class="item {e(r["kind"])}" href="{e(link)}" data-kind="{e(r["kind"])}">'
                f'<span class="icon">{ICONS.get(r["kind"], ICONS["file"])}</span>'
                f'<span class="name">{e(r["name"])}</span>'
                f'<span class="meta">{e(human_size(r["size"]))} · {e(human_date(r["modified"]))} · '
                f'{e(r["kind"])}</span></a>'
                f'<a class="get" href="{e(url)}" download title="download">&#8595;</a></li>')
        if not rows and not dirs:
            body.append(f'<li class="empty">No files in this {"folder" if rel else "channel"}.</li>')
        body.append("</ul>")
        return _html(page(f"{title} — tgdav", "".join(body)))

    def _viewer(self, folder: Folder, current: dict, rows: list[dict], sort: str, descending: bool,
                rel: tuple[str, ...] = ()) -> str:
        url = e(href(folder.name, *rel, current["name"]))
        if current["kind"] == "video":
            media = (f'<video id="player" controls autoplay playsinline preload="metadata" '
                     f'src="{url}"></video>')
        elif current["kind"] == "audio":
            media = f'<audio id="player" controls autoplay preload="metadata" src="{url}"></audio>'
        else:
            media = f'<img id="player" src="{url}" alt="{e(current["name"])}">'
        viewable = [r for r in rows if r["kind"] in ("video", "audio", "image")]
        i = viewable.index(current)
        nav = []
        for label, j in (("&#8592; previous", i - 1), ("next &#8594;", i + 1)):
            if 0 <= j < len(viewable):
                nav.append(f'<a href="?view={e(quote(viewable[j]["name"], safe=""))}'
                           f'{e(_sort_query(sort, descending))}">{label}</a>')
        return (f'<section class="viewer">{media}<div class="caption"><span>{e(current["name"])}</span>'
                f'<span>{e(human_size(current["size"]))}</span>'
                f'<a href="{url}" download>download</a>{"".join(nav)}</div></section>')

    # --- status -------------------------------------------------------------------------------
    def status_data(self) -> dict:
        m, a = self.metrics, self.metrics.activity
        cache = m.cache_state()     # the store's own totals: what `tgdav cache stats` prints
        hit = cache.get("hit_bytes", m.value("tgdav_cache_read_bytes_total", result="hit"))
        miss = cache.get("miss_bytes", m.value("tgdav_cache_read_bytes_total", result="miss"))
        return {
            "account": a.account, "home_dc": a.home_dc, "uptime": time.time() - a.started,
            "dcs": {str(dc): state for dc, state in sorted(m.pool_state().items())},
            "streams": a.streams(), "scans": a.scans(),
            "errors": [{"time": t, "text": msg} for t, msg in a.errors()],
            "cache": dict(cache, hit_bytes=hit, miss_bytes=miss,
                          hit_ratio=(hit / (hit + miss)) if hit + miss else None),
            "redis": m.shared_state() or None,      # None: no [state] redis
            "live": {str(channel): state for channel, state in sorted(m.updates_state().items())},
            "leftovers": {"deleted": {kind: m.value("tgdav_leftovers_deleted_total", kind=kind)
                                      for kind in ("pieces", "superseded")},
                          "last_sweep": m.value("tgdav_janitor_last_sweep_timestamp_seconds") or None},
        }

    def status_body(self) -> str:
        d = self.status_data()
        out = [f'<header><a class="up" href="/" aria-label="all channels">&#8592;</a><h1>tgdav status</h1>'
               f'<a class="status" href="{METRICS_PATH}">metrics</a></header>']
        who = e(d["account"]) if d["account"] else "(the account is not known yet)"
        home = f' · home DC {d["home_dc"]}' if d["home_dc"] is not None else ""
        out.append(f'<section><h2>Account</h2><p>{who}{home} · up {human_seconds(d["uptime"])}</p>'
                   "</section>")

        out.append("<section><h2>Data centers</h2>")
        if d["dcs"]:
            out.append('<table><tr><th>DC</th><th>connections</th><th>busy</th><th>draining</th>'
                       '<th>flood gate</th></tr>')
            for dc, s in d["dcs"].items():
                gate = float(s.get("gate_seconds", 0) or 0)
                gated = int(s.get("gated", 0) or 0)
                gate_text = (f'<span class="warn">{gated} waiting, opens in {human_seconds(gate)}</span>'
                             if gate > 0 else "open")
                out.append(f'<tr><td>{e(dc)}</td><td>{e(s.get("senders", 0))}</td>'
                           f'<td>{e(s.get("busy", 0))}</td>'
                           f'<td>{e(s.get("draining", 0))}</td><td>{gate_text}</td></tr>')
            out.append("</table>")
        else:
            out.append("<p>No connections to Telegram's data centers yet; they open on the first read.</p>")
        out.append("</section>")

        out.append(f'<section><h2>Streams <span class="count" id="stream-count">{len(d["streams"])}'
                   f'</span></h2>')
        if d["streams"]:
            out.append('<table id="streams"><tr><th>file</th><th>range</th><th>sent</th><th>rate</th>'
                       '<th>time</th><th>user</th></tr>')
            for s in d["streams"]:
                out.append(f'<tr class="stream"><td>{e(s["path"])}</td><td>{e(s["range"])}</td>'
                           f'<td>{e(human_size(s["sent"]))} of {e(human_size(s["length"]))}</td>'
                           f'<td>{e(human_size(int(s["rate"])))}/s</td>'
                           f'<td>{e(human_seconds(s["seconds"]))}</td>'
                           f'<td>{e(s["user"] or "-")}</td></tr>')
            out.append("</table>")
        else:
            out.append("<p>Nothing is streaming.</p>")
        out.append("</section>")

        scans = d["scans"]              # running, or finished within the last minute
        if scans:
            out.append("<section><h2>Reading channels</h2><ul>")
            for s in scans:
                state = "done" if s["done"] else "reading"
                out.append(f'<li>{e(s["channel"])}: {state}, {s["messages"]} messages, {s["files"]} files, '
                           f'{human_seconds(s["seconds"])}</li>')
            out.append("</ul></section>")

        if d["live"]:
            out.append(self._live_section(d["live"]))

        c = d["cache"]
        ratio = (f'{c["hit_ratio"] * 100:.0f}% of bytes read came from the cache (since it was made or '
                 "cleared)") if c["hit_ratio"] is not None else "no reads yet"
        held = (f'{human_size(int(c["bytes"]))} of {human_size(int(c["limit"]))} in {int(c.get("count", 0))} '
                f'chunks' if "bytes" in c and "limit" in c else "size not known")
        out.append(f"<section><h2>Cache</h2><p>{held} · {ratio}</p></section>")

        if d["redis"]:
            r = d["redis"]
            text = ("answers" if r.get("up") else
                    f'<span class="warn">away for {human_seconds(float(r.get("away_seconds", 0)))}: reads and '
                    f'listings use this replica\'s own state; writes answer 503 until it is back</span> '
                    f'({e(r.get("last_error", ""))})')
            out.append(f'<section id="redis"><h2>Shared state (Redis)</h2><p>{e(r.get("url", ""))}: {text}</p>'
                       "</section>")
        left = d["leftovers"]
        if left["last_sweep"]:
            when = datetime.fromtimestamp(left["last_sweep"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            out.append(f'<section><h2>Leftovers</h2><p>{int(left["deleted"]["pieces"])} pieces of cut-short '
                       f'uploads and {int(left["deleted"]["superseded"])} old versions deleted · last look '
                       f'{e(when)}</p></section>')

        out.append("<section><h2>Recent errors</h2>")
        if d["errors"]:
            out.append('<ul class="errors">')
            for err in d["errors"]:
                when = datetime.fromtimestamp(err["time"], timezone.utc).strftime("%H:%M:%S")
                out.append(f"<li><time>{when}</time> {e(err['text'])}</li>")
            out.append("</ul>")
        else:
            out.append("<p>None.</p>")
        out.append("</section>")
        return '<div id="status">' + "".join(out) + "</div>"


    def _live_section(self, live: dict) -> str:
        """Channels kept current by Telegram's updates (telegram/updates.py): pts, last update, gaps."""
        try:
            names = {str(f.channel_id): f.name for f in self.catalog.folders()}
        except Exception:   # the page still shows the numbers
            names = {}
        rows = ['<section><h2>Live updates</h2><table id="live"><tr><th>channel</th><th>pts</th>'
                '<th>last update</th><th>updates</th><th>gaps healed</th><th>read again</th></tr>']
        for channel, s in live.items():
            last = human_date(s["last_update"]) if s.get("last_update") else "none yet"
            rows.append(f'<tr><td>{e(names.get(channel, channel))}</td><td>{e(s.get("pts", 0))}</td>'
                        f'<td>{e(last)}</td><td>{e(s.get("updates", 0))}</td>'
                        f'<td>{e(s.get("gaps_healed", 0))}</td><td>{e(s.get("too_long", 0))}</td></tr>')
        rows.append("</table></section>")
        return "".join(rows)


def _sort_of(query: dict, default: str) -> tuple[str, bool]:
    sort = (query.get("sort") or [default])[0]
    sort = sort if sort in SORTS else default
    order = (query.get("order") or [""])[0]
    return sort, (order == "desc") if order in ("asc", "desc") else sort in ("date", "size")


def _sort_query(sort: str, descending: bool) -> str:
    return f"&sort={sort}&order={'desc' if descending else 'asc'}"


def _sort_bar(sort: str, descending: bool, keys: tuple[str, ...]) -> str:
    links = []
    for key in keys:
        if key == sort:
            arrow = "&#8595;" if descending else "&#8593;"
            links.append(f'<a class="on" href="?sort={key}&amp;order={"asc" if descending else "desc"}">'
                         f"{key} {arrow}</a>")
        else:
            links.append(f'<a href="?sort={key}">{key}</a>')
    return '<nav class="sort">sort by ' + " ".join(links) + "</nav>"


def _html(text: str) -> Reply:
    return Reply("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-cache")]
                 + PAGE_HEADERS,
                 text.encode())


# geometric shapes every system font has (emoji fonts are not everywhere)
ICONS = {"video": "&#9654;", "audio": "&#9834;", "image": "&#9635;", "text": "&#8801;",
         "pdf": "&#8801;", "archive": "&#9638;", "file": "&#9643;", "folder": "&#9645;"}

CSS = """
:root{color-scheme:light dark;--fg:#1d1d1f;--bg:#fafafa;--mute:#6e6e73;--line:#e3e3e8;--accent:#0a66d8;--warn:#b35900}
@media (prefers-color-scheme:dark){:root{--fg:#f2f2f7;--bg:#1c1c1e;--mute:#a1a1a6;--line:#38383c;--accent:#4ea1ff;--warn:#ffa94d}}
*{box-sizing:border-box}body{margin:0;font:16px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:960px;margin:0 auto;padding:0 12px 48px}
header{display:flex;align-items:center;gap:12px;padding:14px 0;border-bottom:1px solid var(--line)}
header h1{flex:1;font-size:1.3em;margin:0;overflow-wrap:anywhere}
a{color:var(--accent);text-decoration:none}a.up{font-size:1.4em}a.status{font-size:.9em}
nav.sort{padding:8px 0;color:var(--mute);font-size:.9em}nav.sort a{margin-left:8px}nav.sort a.on{font-weight:600}
ul.list{list-style:none;margin:0;padding:0}
ul.list li{display:flex;align-items:center;border-bottom:1px solid var(--line)}
ul.list li[aria-current]{background:color-mix(in srgb,var(--accent) 12%,transparent)}
a.item{flex:1;display:grid;grid-template-columns:2em 1fr;grid-template-rows:auto auto;padding:10px 4px;color:var(--fg);min-width:0}
a.item .icon{grid-row:span 2;font-size:1.2em;color:var(--mute)}a.item.video .icon,a.item.audio .icon{color:var(--accent)}a.item .name{overflow-wrap:anywhere}
a.item .meta{color:var(--mute);font-size:.85em}a.get{padding:10px 14px;font-size:1.2em}
li.empty{padding:16px 4px;color:var(--mute)}
section.viewer{margin:12px 0}section.viewer video,section.viewer audio,section.viewer img{display:block;width:100%;max-height:70vh;background:#000;border-radius:6px}
section.viewer audio{background:none}section.viewer img{object-fit:contain}
.caption{display:flex;flex-wrap:wrap;gap:12px;padding:6px 0;color:var(--mute);font-size:.9em}.caption span:first-child{color:var(--fg);flex:1 1 100%;overflow-wrap:anywhere}
h2{font-size:1.05em;margin:18px 0 6px}table{border-collapse:collapse;width:100%;font-size:.9em;display:block;overflow-x:auto}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);white-space:nowrap}td:first-child{white-space:normal;overflow-wrap:anywhere}
.warn{color:var(--warn)}.count{color:var(--mute);font-weight:normal}ul.errors{padding-left:18px}ul.errors time{color:var(--mute)}
"""

STATUS_JS = """
setInterval(async () => {
  try {
    const r = await fetch(location.pathname + "?fragment=1", {cache: "no-store"});
    if (r.ok) document.getElementById("status").outerHTML = await r.text();
  } catch (e) {}
}, 1000);
"""


def _favicon(size: int = 32) -> bytes:
    """A folder in the accent colour, as an ICO holding one PNG (every browser asks for /favicon.ico)."""
    def inside(x: int, y: int) -> bool:
        return (6 <= y < 27 and 3 <= x < 29) or (3 <= y < 6 and 3 <= x < 14)
    rows = b"".join(b"\0" + b"".join(b"\x0a\x66\xd8\xff" if inside(x, y) else b"\0\0\0\0" for x in range(size))
                    for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    return struct.pack("<HHHBBBBHHII", 0, 1, 1, size, size, 0, 0, 1, 32, len(png), 22) + png


FAVICON = _favicon()


def _csp_hash(source: str) -> str:
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()


# The pages' policy: only their own style and script (by hash), media and images of the share, the
# status page's refresh; nothing inline that an injected name could add would run or load.
PAGE_CSP = ("default-src 'none'; style-src " + _csp_hash(CSS) + "; script-src " + _csp_hash(STATUS_JS)
            + "; img-src 'self'; media-src 'self'; connect-src 'self'; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = [("Content-Security-Policy", PAGE_CSP), ("X-Content-Type-Options", "nosniff")]


def page(title: str, body: str, script: str = "") -> str:
    refresh = '<noscript><meta http-equiv="refresh" content="5"></noscript>' if script else ""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{e(title)}</title>{refresh}<style>{CSS}</style></head>"
            f"<body><main>{body}</main>" + (f"<script>{script}</script>" if script else "")
            + "</body></html>")
