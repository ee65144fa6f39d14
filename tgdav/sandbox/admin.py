"""The sandbox's admin HTTP API on 127.0.0.1 (stdlib, one thread per request):
    GET  /counters     Counters.snapshot()
    GET  /faults       Controls.snapshot()
    POST /faults       Controls.apply_faults(body)   (see controls.py for the JSON); answers once the
                       faults are in force (a DC taken down has cut its connections and refuses more)
    POST /link         Controls.apply_link(body)
    POST /post         a post by another member: {"channel": title, "from": username, "text": "...",
                       "file": {"name": "x.txt", "data": base64} | null} -> {"id": message id}
                       (a second poster for tests: another admin of a channel, a group's member)
    GET  /login-code   {"code": "..."}: the code auth.sendCode "sends"
    POST /publish      a message from some poster, as hostile as a test likes (publish() below)
Answers are JSON. A bad request gets 400 with {"error": "..."}; nothing a client sends stops the server.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from tgdav.sandbox.controls import ControlError, Controls
from tgdav.sandbox.counters import Counters
from tgdav.sandbox.world import BytesSource, World

log = logging.getLogger("tgdav.sandbox.admin")

MAX_BODY = 1 << 20
POLL = 0.1      # seconds; how soon close() is noticed


class AdminServer:
    def __init__(self, counters: Counters, controls: Controls, world: World,
                 clock: Callable[[], float] = time.monotonic, host: str = "127.0.0.1", port: int = 0,
                 call: Callable[[Callable[[], object]], object] = lambda fn: fn(), writes=None) -> None:
        self.counters = counters
        self.controls = controls
        self.world = world
        self.writes = writes    # sandbox.writes.Writes: what /post goes through (journaled)
        self.clock = clock      # the services' clock: "expire references now" must mean their now
        self.call = call        # runs a change of the world where the services run (their loop)
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(POLL,), name="sandbox-admin",
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def start(self) -> "AdminServer":
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def post_as(self, body: dict) -> dict:
        if self.writes is None:
            raise ControlError("this sandbox takes no posts")
        if not isinstance(body, dict):
            raise ControlError("a post must be a JSON object")
        channel = next((c for c in self.world.channels.values() if c.title == body.get("channel")), None)
        sender = self.world.by_username(str(body.get("from", "")))
        if channel is None or sender is None or sender in self.world.channels.values():
            raise ControlError("name an existing channel (title) and user (username)")
        if not channel.may_post(sender):
            raise ControlError(f"@{sender.username} may not post in {channel.title!r}")
        file = body.get("file")
        try:
            file = (str(file["name"]), base64.b64decode(file["data"], validate=True)) if file else None
        except (KeyError, TypeError, ValueError) as e:
            raise ControlError(f"bad file: {e!r}") from None
        message = self.call(lambda: self.writes.post_as(channel, sender.id, str(body.get("text", "")),
                                                        int(time.time()), file, self.world.upload_dc(sender)))
        return {"id": message.id}

    def __enter__(self) -> "AdminServer":
        return self.start()

    def publish(self, body) -> dict:
        """A message posted to the channel titled `channel` (made, readable by every account, when
        `create` is true), as someone with posting rights would: with `name` and `data` (base64) or
        `size` (pattern bytes) a document of MIME type `mime`, else a text post; `text` is its
        caption. Names, titles, types and text go to clients as given, however hostile (a lone
        surrogate as the invalid UTF-8 it stands for). Answers {"channel": id, "message": id, "ok": true}."""
        if not isinstance(body, dict) or not isinstance(body.get("channel"), str):
            raise ControlError('post needs {"channel": "<title>", ...}')
        fields = {k: body.get(k) for k in ("name", "mime", "text", "data")}
        if any(v is not None and not isinstance(v, str) for v in fields.values()):
            raise ControlError("name, mime, text and data are strings")
        try:
            data = base64.b64decode(fields["data"], validate=True) if fields["data"] is not None else None
        except (binascii.Error, ValueError):
            raise ControlError("data is not base64") from None
        size = body.get("size", 0 if data is None else len(data))
        if not isinstance(size, int) or size < 0 or (data is not None and size != len(data)):
            raise ControlError("size is a number of bytes (the length of data when given)")

        def change() -> dict:
            w = self.world
            channel = next((c for c in w.channels.values() if c.title == body["channel"]), None)
            if channel is None:
                if not body.get("create"):
                    raise ControlError(f"no channel titled {body['channel']!r}")
                channel = w.add_channel(body["channel"], members=list(w.accounts.values()))
                channel.changes += 1
                self._announce({"op": "channel"}, channel, channel)
            text = fields["text"] or ""
            if fields["name"] is None and data is None and not body.get("size"):
                message = w.add_text(channel, text)
            else:
                message = w.add_document(channel, name=fields["name"] or "", size=size,
                                         mime=fields["mime"] or "application/octet-stream", text=text,
                                         source=BytesSource(data) if data is not None else None)
            self._announce({"op": "post"}, message, channel)
            return {"channel": channel.id, "message": message.id, "ok": True}
        return self.call(change)

    def _announce(self, op: dict, result, channel) -> None:
        """Tell connected clients, as Telegram pushes every post and new channel to its members
        (services/feed.py, through the journal's listener)."""
        listener = getattr(self.writes, "listener", None)
        if listener is not None:
            listener(op, result, channel)

    def __exit__(self, *exc) -> None:
        self.close()


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _handler_for(admin: AdminServer) -> type[BaseHTTPRequestHandler]:
    gets = {
        "/counters": lambda: admin.counters.snapshot(),
        "/faults": lambda: admin.controls.snapshot(),
        "/login-code": lambda: {"code": admin.world.login_code},
    }
    posts = {
        "/faults": lambda body: admin.controls.apply_faults(body, now=admin.clock()),
        "/link": lambda body: admin.controls.apply_link(body),
        "/publish": admin.publish,
        "/post": lambda body: admin.post_as(body),
    }

    class Handler(BaseHTTPRequestHandler):
        server_version = "tgdav-sandbox-admin"

        def do_GET(self) -> None:
            self._serve(lambda: gets[self._route(gets)]())

        def do_POST(self) -> None:
            self._serve(lambda: self._post(posts[self._route(posts)]))

        def _route(self, table: dict) -> str:
            path = self.path.split("?", 1)[0]
            if path not in table:
                raise _BadRequest(404, f"no such endpoint: {self.command} {path}")
            return path

        def _post(self, apply) -> dict:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise _BadRequest(400, "bad Content-Length") from None
            if not 0 <= length <= MAX_BODY:
                raise _BadRequest(413, f"body must be at most {MAX_BODY} bytes")
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except (ValueError, UnicodeDecodeError) as e:
                raise _BadRequest(400, f"body is not JSON: {e}") from None
            try:
                answer = apply(body)
            except ControlError as e:
                raise _BadRequest(400, str(e)) from None
            return answer if isinstance(answer, dict) else {"ok": True}

        def _serve(self, produce) -> None:
            try:
                status, answer = 200, produce()
            except _BadRequest as e:
                status, answer = e.status, {"error": str(e)}
            except Exception as e:    # a bug must cost one request, not the admin server
                log.exception("admin %s %s failed", self.command, self.path)
                status, answer = 500, {"error": f"internal error: {e!r}"}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args) -> None:
            log.debug("admin: " + fmt, *args)

    return Handler
