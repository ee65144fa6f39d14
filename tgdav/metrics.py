"""What tgdav is doing, for Prometheus and for the status page: the one owner of the prometheus_client
registry, and a small in-memory record of current activity.

`Metrics` is built once, in the composition root, on its own CollectorRegistry (never the global
one, so tests and several servers in one process never share counters), and passed down. The read
path and the WebDAV face report through the explicit methods below; nothing else touches the
registry. Objects built without a Metrics (tests) use a fresh Metrics() of their own.

    read path (pool, fetch, reader)      getfile_done, getfile_failed, file_migrate, flood_wait, export,
                                         reference_refresh, cache_read, dropped_answer
    pool and cache state                 set_pool_source(fn), set_cache_source(fn): read at scrape time
    shared state (Redis, when set)       set_shared_source(fn): read at scrape time
    write path (uploads)                 upload_opened, upload_part, upload_closed
    janitor (leftover messages)          leftovers_deleted, janitor_swept
    WebDAV face                          http_request, stream_opened/stream_closed (dav.access.StreamWatch)
    catalog                              scan_progress (the first scan of a big channel)

Names follow Prometheus conventions: tgdav_ prefix, snake_case, unit suffixes, _total for counters,
histograms in seconds, a `dc` label on everything per data center.

`Activity` is what the status page shows and Prometheus does not keep: the streams running now
(file, range, bytes, start), the last errors in words, scans in progress, the account. Its lock is
the only lock here and nothing is called while holding it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest, start_http_server)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tgdav.errors import ConfigError

disable_created_metrics()   # no *_created series: they double the output and nobody graphs them

log = logging.getLogger("tgdav.metrics")
scan_log = logging.getLogger("tgdav.catalog")

PoolSource = Callable[[], dict]       # {dc_id: {"senders", "busy", "draining", "gated", "gate_seconds"}}
CacheSource = Callable[[], dict]      # {"bytes", "count", "limit"}
SharedSource = Callable[[], dict]     # {"up", "away_seconds", "failures", "last_error"} (cache/shared.py)
UpdatesSource = Callable[[], dict]    # {channel id: {"pts", "last_update", "updates", "gaps_healed", ...}}

HTTP_METHODS = frozenset(("GET", "HEAD", "PROPFIND", "OPTIONS", "PUT", "DELETE", "MKCOL", "MOVE",
                          "COPY", "LOCK", "UNLOCK", "PROPPATCH", "POST"))   # others count as "other"
SCAN_LOG_EVERY = 5000      # a progress line per this many messages scanned

# seconds: from a cached part (~ms) to a slow foreign DC under load
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FLOOD_BUCKETS = (1, 3, 10, 30, 60, 300, 900, 3600, 86400)

# what a Telegram error means to a person, for the status page's list of recent errors
EXPLAINED = {
    "FLOOD_WAIT": "Telegram asked tgdav to slow down on this connection; requests go to other "
                  "connections until the wait is over",
    "FLOOD_PREMIUM_WAIT": "Telegram asked the whole account to wait (download speed limit); "
                          "clients get 503 with Retry-After until then",
    "TIMEOUT": "a request to Telegram took too long; the connection was dropped and the request retried",
    "DISCONNECTED": "a connection to Telegram broke; the request was retried on another one",
    "FILE_MIGRATE": "the file lives on another data center; tgdav moved there and remembers it",
    "FILE_REFERENCE_EXPIRED": "the file's access token expired; tgdav fetched the message again",
    "AUTH_KEY_UNREGISTERED": "a data center forgot tgdav's authorisation; tgdav authorised again",
}


def explain(error: str) -> str:
    """A Telegram error code in words (unknown codes are shown as they are)."""
    base = error.rstrip("_0123456789") if error[-1:].isdigit() else error
    return EXPLAINED.get(base, EXPLAINED.get(error, error))


# --- activity -----------------------------------------------------------------------------------

@dataclass(eq=False)
class Stream:
    """One HTTP response body that streams a file."""
    id: int
    path: str
    range: str            # "bytes 0-1048575 of 5242880" (what the client gets)
    length: int           # body bytes to send
    user: str
    started: float        # clock time
    sent: int = 0

    def view(self, now: float) -> dict:
        seconds = max(now - self.started, 1e-6)
        return {"path": self.path, "range": self.range, "length": self.length, "user": self.user,
                "sent": self.sent, "seconds": now - self.started, "rate": self.sent / seconds}


@dataclass
class Scan:
    channel: str
    messages: int = 0
    files: int = 0
    started: float = 0.0
    finished: float | None = None


@dataclass
class Activity:
    """Streams running now, recent errors, channel scans and the account: the status page's data."""
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    errors_kept: int = 30
    account: str = ""
    home_dc: int | None = None
    started: float = field(default_factory=time.time)
    _streams: dict[int, Stream] = field(default_factory=dict)
    _errors: deque = field(default_factory=deque)
    _scans: dict[str, Scan] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open_stream(self, path: str, range_text: str, length: int, user: str) -> Stream:
        stream = Stream(next(self._ids), path, range_text, length, user, self.clock())
        with self._lock:
            self._streams[stream.id] = stream
        return stream

    def close_stream(self, stream: Stream) -> None:
        with self._lock:
            self._streams.pop(stream.id, None)

    def streams(self) -> list[dict]:
        now = self.clock()
        with self._lock:
            streams = list(self._streams.values())
        return [s.view(now) for s in sorted(streams, key=lambda s: s.started)]

    def error(self, text: str) -> None:
        """Remember an error in words (newest first on the status page)."""
        with self._lock:
            self._errors.appendleft((self.wall(), text))
            while len(self._errors) > self.errors_kept:
                self._errors.pop()

    def errors(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self._errors)

    def scan(self, channel: str, messages: int, files: int, done: bool) -> tuple[int, Scan]:
        """Record a scan's progress: (messages it had before, a copy of it now)."""
        now = self.clock()
        with self._lock:
            scan = self._scans.get(channel)
            if scan is None or scan.finished is not None:
                scan = self._scans[channel] = Scan(channel, started=now)
            before = scan.messages
            scan.messages, scan.files = messages, files
            if done:
                scan.finished = now
            return before, Scan(scan.channel, scan.messages, scan.files, scan.started, scan.finished)

    def scans(self) -> list[dict]:
        """Scans running now, and those finished in the last minute."""
        now = self.clock()
        with self._lock:
            scans = [s for s in self._scans.values() if s.finished is None or now - s.finished < 60]
        return [{"channel": s.channel, "messages": s.messages, "files": s.files,
                 "seconds": (s.finished or now) - s.started, "done": s.finished is not None}
                for s in scans]


# --- metrics ------------------------------------------------------------------------------------

class _Sources(Collector):
    """Per-DC pool gauges and cache gauges, read from the sources at scrape time."""

    def __init__(self, metrics: "Metrics") -> None:
        self.metrics = metrics

    def collect(self) -> Iterable:
        pool = self.metrics.pool_state()
        for name, key, doc in (("tgdav_senders", "senders", "MTProto connections open, per DC"),
                               ("tgdav_senders_busy", "busy", "connections with requests in flight"),
                               ("tgdav_senders_draining", "draining", "connections finishing before close"),
                               ("tgdav_senders_gated", "gated", "connections held back by a FLOOD_WAIT"),
                               ("tgdav_flood_gate_seconds", "gate_seconds",
                                "seconds until the DC's longest flood gate opens")):
            family = GaugeMetricFamily(name, doc, labels=["dc"])
            for dc, state in sorted(pool.items()):
                family.add_metric([str(dc)], float(state.get(key, 0)))
            yield family
        live = self.metrics.updates_state()
        for name, key, doc, kind in (
                ("tgdav_channel_pts", "pts", "the pts a channel's listing is current to", GaugeMetricFamily),
                ("tgdav_channel_last_update_timestamp_seconds", "last_update",
                 "when the last update of a channel was applied (unix time)", GaugeMetricFamily),
                ("tgdav_channel_updates", "updates", "Telegram updates applied to a channel's listing",
                 CounterMetricFamily),
                ("tgdav_channel_gaps_healed", "gaps_healed",
                 "update gaps of a channel healed with getChannelDifference", CounterMetricFamily),
                ("tgdav_channel_differences", "differences", "updates.getChannelDifference calls",
                 CounterMetricFamily),
                ("tgdav_channel_too_long", "too_long",
                 "channelDifferenceTooLong answers (the channel was read again)", CounterMetricFamily)):
            family = kind(name, doc, labels=["channel"])
            for channel, state in sorted(live.items()):
                family.add_metric([str(channel)], float(state.get(key, 0)))
            yield family
        cache = self.metrics.cache_state()
        for name, key, doc in (("tgdav_cache_bytes", "bytes", "disk used by the chunk cache"),
                               ("tgdav_cache_chunks", "count", "chunks in the cache"),
                               ("tgdav_cache_limit_bytes", "limit", "the chunk cache's size limit")):
            family = GaugeMetricFamily(name, doc)
            if key in cache:
                family.add_metric([], float(cache[key]))
            yield family
        shared = self.metrics.shared_state()
        if shared:          # only with [state] redis
            up = GaugeMetricFamily("tgdav_redis_up", "1 while Redis (shared state) answers, 0 while it is "
                                   "away (writes answer 503, reads use this replica's own state)")
            up.add_metric([], 1.0 if shared.get("up") else 0.0)
            yield up
            failures = CounterMetricFamily("tgdav_redis_failures", "Redis calls that met a connection "
                                           "error or their deadline")
            failures.add_metric([], float(shared.get("failures", 0)))
            yield failures


class Metrics:
    """The registry and the methods that feed it. All methods are thread-safe and cheap."""

    def __init__(self, registry: CollectorRegistry | None = None, activity: Activity | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.activity = activity if activity is not None else Activity()
        self._pool_source: PoolSource | None = None
        self._cache_source: CacheSource | None = None
        self._shared_source: SharedSource | None = None
        self._updates_source: UpdatesSource | None = None
        r = self.registry
        # read path
        self._getfile = Counter("tgdav_getfile_requests", "successful upload.getFile requests", ["dc"],
                                registry=r)
        self._getfile_bytes = Counter("tgdav_getfile_bytes", "bytes received by upload.getFile", ["dc"],
                                      registry=r)
        self._getfile_seconds = Histogram("tgdav_getfile_seconds", "upload.getFile round trip", ["dc"],
                                          buckets=LATENCY_BUCKETS, registry=r)
        self._getfile_errors = Counter("tgdav_getfile_errors", "failed upload.getFile requests by error",
                                       ["dc", "error"], registry=r)
        self._migrations = Counter("tgdav_file_migrations", "FILE_MIGRATE answers (dc: asked, to_dc: "
                                   "where the file lives)", ["dc", "to_dc"], registry=r)
        self._floods = Histogram("tgdav_flood_wait_seconds", "FLOOD_WAIT deadlines Telegram set, in "
                                 "seconds (scope: sender or account)", ["dc", "scope"],
                                 buckets=FLOOD_BUCKETS, registry=r)
        self._exports = Counter("tgdav_exports", "auth.exportAuthorization done for a DC", ["dc"],
                                registry=r)
        self._refreshes = Counter("tgdav_file_reference_refreshes", "messages fetched again for an "
                                  "expired file reference", registry=r)
        self._cache_read = Counter("tgdav_cache_read_bytes", "bytes the reader wanted, by where they "
                                   "came from (hit: chunk cache, miss: Telegram)", ["result"], registry=r)
        self._dropped = Counter("tgdav_dropped_answers", "rpc_drop_answer sent for requests no longer "
                                "wanted", ["dc"], registry=r)
        self._streams = Gauge("tgdav_active_streams", "HTTP responses streaming file bytes now", registry=r)
        # HTTP
        self._http = Counter("tgdav_http_requests", "HTTP requests answered", ["method", "status"],
                             registry=r)
        self._http_bytes = Counter("tgdav_http_sent_bytes", "HTTP body bytes sent", ["method"],
                                   registry=r)
        self._http_ttfb = Histogram("tgdav_http_first_byte_seconds", "time from the request to the "
                                    "first body byte", ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self._http_seconds = Histogram("tgdav_http_request_seconds", "time from the request to its "
                                       "last byte", ["method"], buckets=LATENCY_BUCKETS + (60, 300, 3600),
                                       registry=r)
        self._http_closed = Counter("tgdav_http_client_closed", "responses the client left before "
                                    "their end (a seek or stop)", ["method"], registry=r)
        # writes (called by the upload path)
        self._uploads = Gauge("tgdav_active_uploads", "files being uploaded now", registry=r)
        self._upload_parts = Counter("tgdav_upload_parts", "upload.saveFilePart / saveBigFilePart done",
                                     ["dc"], registry=r)
        self._upload_bytes = Counter("tgdav_upload_bytes", "bytes uploaded in file parts", ["dc"], registry=r)
        self._upload_files = Counter("tgdav_upload_files", "uploads finished, by result (done, failed)",
                                     ["result"], registry=r)
        self._scanned = Counter("tgdav_catalog_messages_scanned", "channel messages read while listing",
                                registry=r)
        # the janitor (telegram/janitor.py)
        self._leftovers = Counter("tgdav_leftovers_deleted", "tgdav's own messages no folder showed, "
                                  "deleted after the grace period (kind: pieces, superseded)", ["kind"],
                                  registry=r)
        self._swept = Gauge("tgdav_janitor_last_sweep_timestamp_seconds", "when the janitor last looked "
                            "at every writable channel (unix time; 0: not yet)", registry=r)
        r.register(_Sources(self))

    # --- the read path's interface --------------------------------------------------------------
    def getfile_done(self, dc: int, nbytes: int, seconds: float) -> None:
        self._getfile.labels(str(dc)).inc()
        self._getfile_bytes.labels(str(dc)).inc(nbytes)
        self._getfile_seconds.labels(str(dc)).observe(seconds)

    def getfile_failed(self, dc: int, error: str) -> None:
        self._getfile_errors.labels(str(dc), error).inc()
        if error not in ("FILE_MIGRATE", "FLOOD_WAIT", "FLOOD_PREMIUM_WAIT"):   # those have their own
            self.activity.error(f"DC {dc}: {error} — {explain(error)}")

    def file_migrate(self, dc_from: int, dc_to: int) -> None:
        self._migrations.labels(str(dc_from), str(dc_to)).inc()

    def flood_wait(self, dc: int, seconds: float, account_wide: bool) -> None:
        scope = "account" if account_wide else "sender"
        self._floods.labels(str(dc), scope).observe(seconds)
        code = "FLOOD_PREMIUM_WAIT" if account_wide else "FLOOD_WAIT"
        self.activity.error(f"DC {dc}: {code} {seconds:.0f} s — {explain(code)}")

    def export(self, dc: int) -> None:
        self._exports.labels(str(dc)).inc()

    def reference_refresh(self) -> None:
        self._refreshes.inc()

    def cache_read(self, hit_bytes: int, miss_bytes: int) -> None:
        if hit_bytes:
            self._cache_read.labels("hit").inc(hit_bytes)
        if miss_bytes:
            self._cache_read.labels("miss").inc(miss_bytes)

    def dropped_answer(self, dc: int) -> None:
        self._dropped.labels(str(dc)).inc()

    def stream_opened(self) -> None:
        self._streams.inc()

    def stream_closed(self) -> None:
        self._streams.dec()

    # --- the write path's interface ---------------------------------------------------------------
    def upload_opened(self) -> None:
        self._uploads.inc()

    def upload_part(self, dc: int, nbytes: int) -> None:
        self._upload_parts.labels(str(dc)).inc()
        self._upload_bytes.labels(str(dc)).inc(nbytes)

    def upload_closed(self, ok: bool, error: str = "") -> None:
        """An upload ended: sent as a message (ok) or given up (error: why, in words)."""
        self._uploads.dec()
        self._upload_files.labels("done" if ok else "failed").inc()
        if not ok:
            self.activity.error(f"upload failed: {error or 'no reason given'}")

    def leftovers_deleted(self, kind: str, count: int) -> None:
        self._leftovers.labels(kind).inc(count)

    def janitor_swept(self) -> None:
        self._swept.set(time.time())

    def set_pool_source(self, fn: PoolSource | None) -> None:
        self._pool_source = fn

    def set_cache_source(self, fn: CacheSource | None) -> None:
        self._cache_source = fn

    def set_shared_source(self, fn: SharedSource | None) -> None:
        self._shared_source = fn
    def set_updates_source(self, fn: UpdatesSource | None) -> None:
        self._updates_source = fn

    def set_account(self, account: str, home_dc: int | None = None) -> None:
        """Who is logged in (shown on the status page), e.g. "@name" and the home DC."""
        self.activity.account, self.activity.home_dc = account, home_dc

    def scan_progress(self, channel: str, messages: int, files: int, done: bool = False) -> None:
        """The catalog's progress callback while it reads a channel's history: `messages` read and
        `files` found so far. Shown on the status page; logged every SCAN_LOG_EVERY messages."""
        before, scan = self.activity.scan(channel, messages, files, done)
        self._scanned.inc(max(messages - before, 0))
        if done:
            if messages >= SCAN_LOG_EVERY:
                scan_log.info("channel %r: scanned %d messages, %d files, in %.1f s", channel, messages,
                              files, scan.finished - scan.started)
        elif messages // SCAN_LOG_EVERY > before // SCAN_LOG_EVERY:
            scan_log.info("channel %r: scanning, %d messages so far, %d files", channel, messages, files)

    # --- the WebDAV face ------------------------------------------------------------------------
    def http_request(self, method: str, status: str, sent: int, first_byte: float | None,
                     seconds: float, client_closed: bool) -> None:
        method = method if method in HTTP_METHODS else "other"
        self._http.labels(method, status).inc()
        self._http_bytes.labels(method).inc(sent)
        if first_byte is not None:
            self._http_ttfb.labels(method).observe(first_byte)
        self._http_seconds.labels(method).observe(seconds)
        if client_closed:
            self._http_closed.labels(method).inc()

    # --- reading it back ------------------------------------------------------------------------
    def exposition(self) -> tuple[str, bytes]:
        """(content type, body) of the Prometheus text format."""
        return CONTENT_TYPE_LATEST, generate_latest(self.registry)

    def pool_state(self) -> dict:
        return _read(self._pool_source, "pool")

    def cache_state(self) -> dict:
        return _read(self._cache_source, "cache")

    def shared_state(self) -> dict:
        """Redis's state ({} without [state] redis)."""
        return _read(self._shared_source, "shared state")
    def updates_state(self) -> dict:
        return _read(self._updates_source, "updates")

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 when absent), e.g. value("tgdav_cache_read_bytes_total", result="hit")."""
        got = self.registry.get_sample_value(name, labels)
        return got or 0.0



def _read(source: Callable[[], dict] | None, what: str) -> dict:
    """A source's answer, or {} (a failing source must not break a scrape or the status page)."""
    if source is None:
        return {}
    try:
        return dict(source() or {})
    except Exception:  # noqa: BLE001 - shown as absent; the reason is logged at debug
        log.debug("the %s source failed", what, exc_info=True)
        return {}


@contextmanager
def listen_errors(listen: str) -> Iterator[None]:
    """A failure to bind [metrics] listen (in use, not ours, unknown) as one ConfigError line with
    the fix (serve_metrics, and tgdav.config.preflight before connecting to Telegram)."""
    try:
        yield
    except OSError as e:
        raise ConfigError(f"cannot serve metrics on {listen} ({e.strerror or e}) — choose another "
                          "[metrics] listen address, or set it to \"\" to serve metrics on the share "
                          "only") from None


def serve_metrics(listen: str, metrics: Metrics):
    """prometheus_client's own HTTP server for `metrics` on "host:port" (any path answers).
    Returns (server, url); server.shutdown() stops it. A port that cannot be bound is a ConfigError."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    with listen_errors(listen):
        server, _thread = start_http_server(int(port), addr=host, registry=metrics.registry)
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return server, f"http://{shown}:{bound_port}/metrics"
