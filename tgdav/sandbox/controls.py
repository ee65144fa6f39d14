"""Link emulation and faults: what the sandbox is told to do to its clients, changed live.

Read by the server (link, down, drop) and by the services (floods, file references). Written by the
admin API (POST /link, POST /faults) and by in-process tests. Every accessor takes the lock, so the
admin thread and the loop thread can share one Controls. apply_faults returns once the faults are in
force: what is read at each use is at once, and what a server must act on (a DC going down cuts its
connections and stops listening; coming back up, it listens again) is done by the enforcers the DC
servers register (enforce_with) before it returns, so the admin API's answer means "done".

JSON accepted by POST /link (and `apply_link`):
    {"profile": "telegram-like"}            named profile (see PROFILES)
    {"latency_ms": 100, "bandwidth": 2097152, "jitter_ms": 20} explicit values; bandwidth in bytes/s per
                                            connection, 0 = unlimited; jitter reorders answers
    {"upload_bandwidth": 2097152}           client -> server bytes/s per connection (uplink.py), 0 = unlimited;
                                            explicit values not given are 0
    either form may add "dc": N to set one DC only (a slow DC)

JSON accepted by POST /faults (and `apply_faults`); every key optional, absent keys unchanged:
    {"flood_wait": [{"dc": 2, "method": "GetFile", "seconds": 5, "count": 1, "premium": false,
                     "account": 0, "after": 0}],                # account: only this user id (0 = any);
                                                                # after: let that many matching calls
                                                                # through first (flood the 2nd edit: 1)
     "getfile_rate_limit": {"per_second": 10, "seconds": 3},   # rule: > N getFile/s per account and DC
     "history_rate_limit": {"per_second": 1, "burst": 30, "seconds": 3},  # messages.getHistory per
                                                                # account: a bucket of `burst` calls
                                                                # refilled at per_second; null = off.
                                                                # ON by default (HISTORY_RULE): tgdav
                                                                # must keep inside it
     "file_reference_ttl": 30,                                  # seconds a file reference lives; null = forever
     "expire_file_references": true,                            # every reference handed out so far expires now
     "drop_after_bytes": {"2": {"bytes": 100000, "count": 1}},  # next `count` connections to DC 2 dropped
     "down": [3],                                               # DCs that refuse service
     "upload_rate_limit": {"per_second": 20, "seconds": 5},    # rule: > N saveFilePart/saveBigFilePart
                                                                # per second per account and DC
     "upload_part_ttl": 3600,                                   # seconds an untouched upload's parts live
     "expire_upload_parts": true,                               # every upload so far loses its parts now
     "file_part_missing": [{"part": 3, "count": 1}],            # the next `count` saves of part 3 are
                                                                # acknowledged but lost: using the file
                                                                # then answers FILE_PART_3_MISSING
     "upload_max_fileparts": {"default": 4000, "premium": 8000}, # parts per file (help.getAppConfig)
     "drop_updates": 3,                                         # the next 3 pushed updates are lost
                                                                # (pts still moves: the client sees a gap)
     "message_box": 50,                                         # getChannelDifference keeps only the last
                                                                # 50 changes per channel: an older pts
                                                                # is answered channelDifferenceTooLong
     "clear": true}                                              # reset all faults first
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Link:
    latency_ms: float = 0.0   # added round trip per request/answer
    bandwidth: int = 0        # bytes per second per connection, server -> client; 0 = unlimited
    jitter_ms: float = 0.0    # each answer is held back by a random 0..jitter_ms: answers overtake each other
    upload_bandwidth: int = 0  # bytes per second per connection, client -> server; 0 = unlimited

    @property
    def active(self) -> bool:
        return self.latency_ms > 0 or self.bandwidth > 0 or self.jitter_ms > 0


class LinkTime:
    """The time the link emulation (link.py, uplink.py) waits in: real (time.monotonic, asyncio.sleep)."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class EmulatedTime(LinkTime):
    """Link time in which nothing waits: sleep(s) adds s to now() and returns at once. Installed as
    Controls.link_time (before the client connects), it turns what the link emulation held bytes back
    into a reading that neither waits nor depends on the machine's load: now() after a transfer minus
    now() before it is at least what the emulated link must have taken. Every connection's waits
    add to the one clock, so a reading around one connection's transfer can only be more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()      # read by the test's thread, moved by the sandbox's loop
        self._now = 0.0

    def now(self) -> float:
        with self._lock:
            return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._now += seconds
        await asyncio.sleep(0)


PROFILES: dict[str, Link] = {
    "off": Link(),
    "telegram-like": Link(latency_ms=100.0, bandwidth=2 * 1024 * 1024, upload_bandwidth=2 * 1024 * 1024),
    # real Telegram answers out of order: the fault tests run with answers overtaking each other
    "jittery": Link(latency_ms=5.0, jitter_ms=20.0),
}


ENFORCE_TIMEOUT = 10.0         # seconds apply_faults waits for a server to put a fault in force
UPLOAD_PART_TTL = 6 * 3600.0   # seconds: Telegram keeps unused upload parts for hours
# messages.getHistory per account: (calls per second, burst, flood seconds); why these figures:
# services/ratelimit.py HistoryRate
HISTORY_RULE = (1.0, 30, 3)


@dataclass
class FloodInjection:
    dc: int
    method: str          # TL request name without "Request", e.g. "GetFile"; "*" for any
    seconds: int
    count: int = 1
    premium: bool = False
    account: int = 0     # user id of the one account it floods (Telegram's limits are per account); 0 = any
    after: int = 0       # matching calls let through before the flood starts


@dataclass
class Faults:
    flood_wait: list[FloodInjection] = field(default_factory=list)
    getfile_per_second: int = 0          # 0 = no rate rule
    getfile_flood_seconds: int = 3
    history_per_second: float = HISTORY_RULE[0]   # 0 = no rule
    history_burst: int = HISTORY_RULE[1]
    history_flood_seconds: int = HISTORY_RULE[2]
    file_reference_ttl: float | None = None
    references_expired_at: float | None = None   # monotonic time; references issued before it are expired
    drop_after_bytes: dict[int, list[int]] = field(default_factory=dict)  # dc -> [bytes, count]
    down: set[int] = field(default_factory=set)
    upload_per_second: int = 0           # 0 = no rate rule
    upload_flood_seconds: int = 3
    upload_part_ttl: float = UPLOAD_PART_TTL
    upload_parts_expired_at: float | None = None  # monotonic time; uploads touched before it are gone
    lost_parts: dict[int, int] = field(default_factory=dict)   # part number -> how many saves to lose
    upload_max_fileparts_default: int = 4000
    upload_max_fileparts_premium: int = 8000
    drop_updates: int = 0                 # pushed updates still to lose (services/feed.py)
    message_box: int = 100_000            # changes per channel getChannelDifference can still give


class ControlError(ValueError):
    """A malformed admin request."""


class Controls:
    def __init__(self, link: Link | None = None) -> None:
        self._lock = threading.Lock()
        self._link = link or Link()
        self._dc_links: dict[int, Link] = {}
        self._faults = Faults()
        self._enforcers: list[Callable[[], Future | None]] = []
        # the time a new connection's link emulation waits in (a test may install EmulatedTime)
        self.link_time: LinkTime = LinkTime()

    def enforce_with(self, enforce: Callable[[], Future | None]) -> Callable[[], None]:
        """Have `enforce()` called after every apply_faults: it puts the faults in force where they are
        served and returns a Future that completes once they are (None: nothing to wait for, e.g. when
        called on the server's own loop). Returns the function that unregisters it."""
        with self._lock:
            self._enforcers.append(enforce)

        def unregister() -> None:
            with self._lock:
                if enforce in self._enforcers:
                    self._enforcers.remove(enforce)
        return unregister

    def _enforce(self) -> None:
        with self._lock:
            enforcers = list(self._enforcers)
        for done in [enforce() for enforce in enforcers]:
            if done is not None:
                done.result(ENFORCE_TIMEOUT)

    # --- link -------------------------------------------------------------------------------
    def link_for(self, dc_id: int) -> Link:
        with self._lock:
            return self._dc_links.get(dc_id, self._link)

    def set_link(self, link: Link, dc_id: int | None = None) -> None:
        with self._lock:
            if dc_id is None:
                self._link = link
                self._dc_links.clear()
            else:
                self._dc_links[dc_id] = link

    def apply_link(self, body: dict) -> None:
        if not isinstance(body, dict):
            raise ControlError("link settings must be a JSON object")
        if "profile" in body:
            name = body["profile"]
            if name not in PROFILES:
                raise ControlError(f"unknown link profile {name!r}; known: {', '.join(PROFILES)}")
            link = PROFILES[name]
        else:
            try:
                link = Link(float(body.get("latency_ms", 0)), int(body.get("bandwidth", 0)),
                            jitter_ms=float(body.get("jitter_ms", 0)),
                            upload_bandwidth=int(body.get("upload_bandwidth", 0)))
            except (TypeError, ValueError) as e:
                raise ControlError(f"bad link value: {e}") from None
            if link.latency_ms < 0 or link.bandwidth < 0 or link.jitter_ms < 0 or link.upload_bandwidth < 0:
                raise ControlError("latency_ms, bandwidth, jitter_ms and upload_bandwidth must be >= 0")
        dc = body.get("dc")
        self.set_link(link, int(dc) if dc is not None else None)

    # --- faults read by the server --------------------------------------------------------
    def is_down(self, dc_id: int) -> bool:
        with self._lock:
            return dc_id in self._faults.down

    def take_drop(self, dc_id: int) -> int | None:
        """For a new connection to dc_id: the byte count after which to drop it, or None."""
        with self._lock:
            entry = self._faults.drop_after_bytes.get(dc_id)
            if not entry:
                return None
            entry[1] -= 1
            if entry[1] <= 0:
                del self._faults.drop_after_bytes[dc_id]
            return entry[0]

    # --- faults read by the services ------------------------------------------------------
    def take_flood(self, dc_id: int, method: str, account_id: int | None = None) -> FloodInjection | None:
        """An injected FLOOD_WAIT for this call (by `account_id`, None: not logged in), consuming one
        of its count."""
        with self._lock:
            for inj in self._faults.flood_wait:
                if (inj.dc in (dc_id, 0) and inj.method in (method, "*")
                        and inj.account in (account_id, 0)):
                    if inj.after > 0:
                        inj.after -= 1
                        continue
                    inj.count -= 1
                    if inj.count <= 0:
                        self._faults.flood_wait.remove(inj)
                    return inj
        return None

    def getfile_rate_rule(self) -> tuple[int, int]:
        """(max getFile per second per account and DC, flood seconds to answer); (0, _) = off."""
        with self._lock:
            return self._faults.getfile_per_second, self._faults.getfile_flood_seconds

    def history_rate_rule(self) -> tuple[float, int, int]:
        """(getHistory calls per second per account, burst, flood seconds); (0, _, _) = off."""
        with self._lock:
            f = self._faults
            return f.history_per_second, f.history_burst, f.history_flood_seconds

    def upload_rate_rule(self) -> tuple[int, int]:
        """(max saveFilePart/saveBigFilePart per second per account and DC, flood seconds); (0, _) = off."""
        with self._lock:
            return self._faults.upload_per_second, self._faults.upload_flood_seconds

    def upload_part_policy(self) -> tuple[float, float | None]:
        """(seconds an untouched upload lives, monotonic time at or before which every upload expired)."""
        with self._lock:
            return self._faults.upload_part_ttl, self._faults.upload_parts_expired_at

    def take_lost_part(self, part: int) -> bool:
        """Whether this save of `part` is to be lost (a file_part_missing fault), consuming one."""
        with self._lock:
            left = self._faults.lost_parts.get(part, 0)
            if left <= 0:
                return False
            if left == 1:
                del self._faults.lost_parts[part]
            else:
                self._faults.lost_parts[part] = left - 1
            return True

    def take_update_drop(self) -> bool:
        """Whether the next pushed update is to be lost (a drop_updates fault), consuming one."""
        with self._lock:
            if self._faults.drop_updates <= 0:
                return False
            self._faults.drop_updates -= 1
            return True

    def message_box(self) -> int:
        with self._lock:
            return self._faults.message_box

    def max_file_parts(self, premium: bool) -> int:
        with self._lock:
            f = self._faults
            return f.upload_max_fileparts_premium if premium else f.upload_max_fileparts_default

    def reference_policy(self) -> tuple[float | None, float | None]:
        """(ttl seconds or None, monotonic time before which every issued reference is expired)."""
        with self._lock:
            return self._faults.file_reference_ttl, self._faults.references_expired_at

    # --- admin --------------------------------------------------------------------------------
    def apply_faults(self, body: dict, now: float) -> None:
        """Apply a POST /faults body, returning once it is in force. `now` is the monotonic clock of the
        services."""
        if not isinstance(body, dict):
            raise ControlError("faults must be a JSON object")
        try:
            with self._lock:
                f = self._faults
                if body.get("clear"):
                    f = self._faults = Faults()
                for item in body.get("flood_wait", []):
                    f.flood_wait.append(FloodInjection(
                        dc=int(item.get("dc", 0)), method=str(item.get("method", "*")),
                        seconds=int(item["seconds"]), count=int(item.get("count", 1)),
                        premium=bool(item.get("premium", False)), account=int(item.get("account", 0)),
                        after=int(item.get("after", 0))))
                if "getfile_rate_limit" in body:
                    rule = body["getfile_rate_limit"] or {}
                    f.getfile_per_second = int(rule.get("per_second", 0))
                    f.getfile_flood_seconds = int(rule.get("seconds", 3))
                if "history_rate_limit" in body:
                    rule = body["history_rate_limit"] or {"per_second": 0}
                    f.history_per_second = float(rule.get("per_second", HISTORY_RULE[0]))
                    f.history_burst = int(rule.get("burst", HISTORY_RULE[1]))
                    f.history_flood_seconds = int(rule.get("seconds", HISTORY_RULE[2]))
                    if f.history_per_second < 0 or f.history_burst < 1 or f.history_flood_seconds < 1:
                        raise ValueError("history_rate_limit needs per_second >= 0, burst >= 1, seconds >= 1")
                if "file_reference_ttl" in body:
                    ttl = body["file_reference_ttl"]
                    f.file_reference_ttl = None if ttl is None else float(ttl)
                if body.get("expire_file_references"):
                    f.references_expired_at = now
                for dc, spec in (body.get("drop_after_bytes") or {}).items():
                    f.drop_after_bytes[int(dc)] = [int(spec["bytes"]), int(spec.get("count", 1))]
                if "down" in body:
                    f.down = {int(dc) for dc in body["down"]}
                if "upload_rate_limit" in body:
                    rule = body["upload_rate_limit"] or {}
                    f.upload_per_second = int(rule.get("per_second", 0))
                    f.upload_flood_seconds = int(rule.get("seconds", 3))
                if "upload_part_ttl" in body:
                    ttl = body["upload_part_ttl"]
                    f.upload_part_ttl = UPLOAD_PART_TTL if ttl is None else float(ttl)
                if body.get("expire_upload_parts"):
                    f.upload_parts_expired_at = now
                for item in body.get("file_part_missing", []):
                    part = int(item["part"])
                    f.lost_parts[part] = f.lost_parts.get(part, 0) + int(item.get("count", 1))
                if "drop_updates" in body:
                    f.drop_updates = max(0, int(body["drop_updates"]))
                if "message_box" in body:
                    f.message_box = max(1, int(body["message_box"] or 100_000))
                if "upload_max_fileparts" in body:
                    limits = body["upload_max_fileparts"] or {}
                    default = int(limits.get("default", 4000))
                    premium = int(limits.get("premium", 2 * default))
                    if default < 1 or premium < 1:
                        raise ValueError("upload_max_fileparts must be >= 1")
                    f.upload_max_fileparts_default, f.upload_max_fileparts_premium = default, premium
        except (KeyError, TypeError, ValueError) as e:
            raise ControlError(f"bad fault value: {e!r}") from None
        self._enforce()

    def snapshot(self) -> dict:
        with self._lock:
            f = self._faults
            return {
                "link": asdict(self._link),
                "dc_links": {str(dc): asdict(l) for dc, l in self._dc_links.items()},
                "faults": {
                    "flood_wait": [asdict(i) for i in f.flood_wait],
                    "getfile_rate_limit": {"per_second": f.getfile_per_second,
                                           "seconds": f.getfile_flood_seconds},
                    "history_rate_limit": {"per_second": f.history_per_second, "burst": f.history_burst,
                                           "seconds": f.history_flood_seconds},
                    "file_reference_ttl": f.file_reference_ttl,
                    "drop_after_bytes": {str(dc): {"bytes": b, "count": c}
                                         for dc, (b, c) in f.drop_after_bytes.items()},
                    "down": sorted(f.down),
                    "upload_rate_limit": {"per_second": f.upload_per_second,
                                          "seconds": f.upload_flood_seconds},
                    "upload_part_ttl": f.upload_part_ttl,
                    "file_part_missing": [{"part": p, "count": c} for p, c in sorted(f.lost_parts.items())],
                    "upload_max_fileparts": {"default": f.upload_max_fileparts_default,
                                             "premium": f.upload_max_fileparts_premium},
                    "drop_updates": f.drop_updates,
                    "message_box": f.message_box,
                },
            }
