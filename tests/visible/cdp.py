"""Headless Chromium driven over the Chrome DevTools Protocol: enough to load pages, click, read the
DOM and take screenshots. Chromium is Debian's package (installed by .ci/run); no browser download."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import websocket

from tests.helpers import wait_until

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--mute-audio", "--window-size=1000,900"]


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("chromium is not installed — `apt-get install chromium` (.ci/run does)")


class Tab:
    """One page target over its own websocket."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str, *, gesture: bool = False):
        """The value of `expression` (promises awaited); a JS exception fails the test."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True,
                           userGesture=gesture)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, what: str, timeout: float = 60.0):
        """Poll `expression` until it is truthy (bounded); returns its value."""
        return wait_until(lambda: self.js(expression), timeout, f"{what} ({expression})", interval=0.1)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait(f"location.href === {json.dumps(url)} && document.readyState === 'complete'", f"loading {url}")

    def click(self, selector: str) -> None:
        """A real mouse click at the middle of the element (scrolled into view first)."""
        box = self.js(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
            el.scrollIntoView({{block: "center"}}); const r = el.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.ws.close()


class Browser:
    def __init__(self, profile: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([chromium_binary(), *FLAGS, f"--user-data-dir={profile}",
                                      "--remote-debugging-port=0", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=open(profile / "chromium.err", "wb"),
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        port_file = profile / "DevToolsActivePort"

        def started() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError("chromium did not start: " + (profile / "chromium.err").read_text()[-2000:])
            return port_file.exists() and len(port_file.read_text().splitlines()) >= 2
        wait_until(started, 60, lambda: "chromium's DevToolsActivePort: "
                   + (profile / "chromium.err").read_text()[-2000:], interval=0.1)
        self.port = int(port_file.read_text().splitlines()[0])
        self.tabs: list[Tab] = []

    def _json(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def tab(self, url: str = "about:blank") -> Tab:
        target = self._json("/json/new?" + url, method="PUT")
        tab = Tab(target["webSocketDebuggerUrl"])
        tab.call("Page.enable")
        tab.call("Runtime.enable")
        self.tabs.append(tab)
        return tab

    def close(self) -> None:
        for tab in self.tabs:
            try:
                tab.close()
            except Exception:  # noqa: BLE001 - the browser is going away anyway
                pass
        from tests.e2e.conftest import stop
        stop(self.proc)
