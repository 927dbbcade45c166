"""Headless Chromium driven over the DevTools protocol on a pipe (no driver, no extra package).

Chromium started with ``--remote-debugging-pipe`` reads protocol commands on its file descriptor 3
and writes replies and events on 4, each a JSON message ended by a NUL byte. :class:`Chromium`
starts the browser with the network cut off (every request that is not ``file:``, ``data:`` or
``blob:`` fails and is recorded), opens one tab and answers the calls :mod:`deqode.book.site_check`
needs: navigate, evaluate a script, take a full-page screenshot, and the page's console errors.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where Debian's ``chromium`` package puts the browser; ``DEQODE_CHROMIUM`` overrides.
CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "install it with `sudo apt-get install -y chromium` (Debian/Ubuntu package chromium)"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--allow-file-access-from-files",
    # a second wall behind the request interception: no host name resolves
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
WIDTH, HEIGHT = 1280, 900
#: Screenshots stop at this height (CSS pixels); longer pages are cut.
MAX_SHOT_HEIGHT = 16000


class BrowserError(RuntimeError):
    """Chromium is missing, died, or did not answer in time."""


def chromium_path() -> str:
    """The Chromium executable (``DEQODE_CHROMIUM`` or ``/usr/bin/chromium``), or raise how to get
    it."""
    path = os.environ.get("DEQODE_CHROMIUM", CHROMIUM)
    found = shutil.which(path)
    if found is None:
        raise BrowserError(f"no Chromium at {path}; {INSTALL_HINT}, or set DEQODE_CHROMIUM")
    return found


def _above_nine(fd: int) -> int:
    """``fd`` moved to a number above 9, clear of the 3 and 4 the browser needs."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


@dataclass
class PageLog:
    """What the tab reported while one page loaded."""

    console_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


class Chromium:
    """One headless Chromium with one tab; use as a context manager."""

    def __init__(self, executable: str | None = None, *, timeout: float = 30.0) -> None:
        self.executable = executable or chromium_path()
        self.timeout = timeout
        self.log = PageLog()
        self._next_id = 0
        self._buffer = b""
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "Fetch.requestPaused": self._on_request,
            "Runtime.consoleAPICalled": self._on_console,
            "Runtime.exceptionThrown": self._on_exception,
            "Log.entryAdded": self._on_log_entry,
        }

    # ---- process and pipe -------------------------------------------------------------------
    def __enter__(self) -> Chromium:
        self._profile = tempfile.mkdtemp(prefix="deqode-chromium-")
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        to_child, from_child = _above_nine(to_child), _above_nine(from_child)
        # the browser reads commands on fd 3 and writes on fd 4; bash puts the pipes there (dash
        # cannot redirect descriptors above 9)
        script = f'exec "$0" "$@" 3<&{to_child} 4>&{from_child} {to_child}<&- {from_child}>&-'
        args = [*FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-pipe",
                f"--window-size={WIDTH},{HEIGHT}", "about:blank"]
        self._proc = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", script, self.executable, *args],
            pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # dbus and GPU chatter
        )
        os.close(to_child)
        os.close(from_child)
        try:
            self._open_tab()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._proc.poll() is None:
                self._send("Browser.close", {}, session=None)
                self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, BrowserError):
            self._proc.kill()
            self._proc.wait()
        finally:
            os.close(self._write)
            os.close(self._read)
            shutil.rmtree(self._profile, ignore_errors=True)

    def _send(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._write, json.dumps(message).encode() + b"\0")
        except BrokenPipeError as err:
            raise BrowserError(f"Chromium exited (code {self._proc.poll()})") from err
        return self._next_id

    def _pump(self, deadline: float) -> bool:
        """Read and dispatch what the browser wrote; False when ``deadline`` passed first."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self._read], [], [], left)
        if not ready:
            return False
        chunk = os.read(self._read, 1 << 20)
        if not chunk:
            raise BrowserError(
                f"Chromium closed its pipe (exit code {self._proc.poll()}); "
                f"`{self.executable} --headless --no-sandbox --dump-dom about:blank` shows why")
        self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b"\0")
        for raw in messages:
            message = json.loads(raw)
            if "id" in message:
                self._replies[message["id"]] = message
            else:
                handler = self._handlers.get(message.get("method", ""))
                if handler is not None:
                    handler(message.get("params", {}))
                self._events.append(message)
        return True

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             session: str | None = "page", timeout: float | None = None) -> dict[str, Any]:
        """Send ``method`` (to the tab unless ``session`` is None) and return its result."""
        target = self._session if session == "page" else session
        call_id = self._send(method, params or {}, target)
        deadline = time.monotonic() + (timeout or self.timeout)
        while call_id not in self._replies:
            if not self._pump(deadline):
                raise BrowserError(f"no answer to {method} within {timeout or self.timeout} s")
        reply = self._replies.pop(call_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result", {})

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """The params of the next event ``method`` of the tab (events seen before are dropped)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == self._session:
                    del self._events[: i + 1]
                    return event.get("params", {})
            self._events.clear()
            if not self._pump(deadline):
                raise BrowserError(f"no {method} within {timeout or self.timeout} s")

    def _open_tab(self) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=None)
        attached = self.call("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session=None)
        self._session = attached["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(method)
        self.call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})
        self._window(HEIGHT)

    # ---- events -----------------------------------------------------------------------------
    def _on_request(self, params: dict[str, Any]) -> None:
        url = params["request"]["url"]
        if url.startswith(LOCAL_SCHEMES):
            self._send("Fetch.continueRequest", {"requestId": params["requestId"]}, self._session)
        else:
            self.log.blocked.append(url)
            self._send("Fetch.failRequest",
                       {"requestId": params["requestId"], "errorReason": "InternetDisconnected"},
                       self._session)

    def _on_console(self, params: dict[str, Any]) -> None:
        if params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.log.console_errors.append(f"console.{params['type']}: {text}")

    def _on_exception(self, params: dict[str, Any]) -> None:
        details = params.get("exceptionDetails", {})
        text = details.get("exception", {}).get("description") or details.get("text", "")
        self.log.console_errors.append(f"uncaught: {text.splitlines()[0] if text else details}")

    def _on_log_entry(self, params: dict[str, Any]) -> None:
        entry = params.get("entry", {})
        if entry.get("level") == "error":
            where = f" ({entry['url']})" if entry.get("url") else ""
            self.log.console_errors.append(f"{entry.get('text', '')}{where}")

    # ---- page operations --------------------------------------------------------------------
    def open(self, url: str) -> PageLog:
        """Load ``url``, wait for its load event; return the log that fills while it is open."""
        self.log = PageLog()
        self._events.clear()
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            self.log.console_errors.append(f"navigation failed: {result['errorText']}")
            return self.log
        self.wait_event("Page.loadEventFired")
        return self.log

    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """The JSON value of ``expression`` in the tab (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, timeout=timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"script failed: {details.get('exception', details)}")
        return result.get("result", {}).get("value")

    def screenshot(self, path: str | Path) -> Path:
        """A PNG of the whole page (cut at :data:`MAX_SHOT_HEIGHT` CSS pixels) at ``path``: the
        window is made as tall as the page for the shot (a capture beyond the window shifts
        this theme's article sideways)."""
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = min(int(size["height"]) + 1, MAX_SHOT_HEIGHT)
        self._window(height)
        try:
            shot = self.call("Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True})
        finally:
            self._window(HEIGHT)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def _window(self, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False})
