"""The webhook relay of the live-sync end-to-end tests: Label Studio posts its webhooks here.

The relay answers Label Studio at once (200, so Label Studio never waits or disables the hook)
and forwards each event to the backend's ``/webhook`` with the same headers and body, as a
seeded :class:`RelayPolicy` decides: dropped, sent once or twice, each copy at once or after a
random delay (so later events overtake it). One thread delivers, in due-time order (ties in
arrival order). Every event and every answer of the backend is recorded as a :class:`Relayed`,
so a test can tell which events the backend accepted (2xx) and print what happened to each.

Decisions are drawn in arrival order from ``random.Random(seed)``: the same seed and the same
sequence of Label Studio operations give the same fates (the timing of delays aside).
"""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

__all__ = ["PASS_THROUGH", "Answer", "RelayPolicy", "Relayed", "WebhookRelay"]

#: seconds the relay waits for the backend's answer (longer than redis-py's reconnect retries)
DELIVERY_TIMEOUT = 30.0
_HOP_HEADERS = frozenset({"host", "content-length", "connection", "accept-encoding"})


@dataclass(frozen=True)
class RelayPolicy:
    """Probabilities of an event being dropped, duplicated, and of each copy being delayed by
    up to ``max_delay`` seconds (uniform)."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    max_delay: float = 3.0


PASS_THROUGH = RelayPolicy()


@dataclass(frozen=True)
class Answer:
    """The backend's answer to one copy: an HTTP status, or the transport error's name when
    there was none; ``sent`` and ``answered`` are ``time.monotonic()`` readings."""

    status: int | str
    sent: float
    answered: float

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300


@dataclass
class Relayed:
    """One webhook Label Studio sent: what it names, its fate, and the backend's answers."""

    seq: int
    action: str
    tasks: tuple[int, ...]
    annotations: tuple[int, ...]
    delays: tuple[float, ...]  # one per copy sent; empty: dropped
    answers: list[Answer] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """The backend answered 2xx to at least one copy."""
        return any(answer.ok for answer in self.answers)

    def describe(self) -> str:
        named = "".join(
            f" {what} {list(ids)}"
            for what, ids in (("tasks", self.tasks), ("annotations", self.annotations))
            if ids
        )
        if not self.delays:
            return f"#{self.seq} {self.action}{named}: dropped"
        sent = ", ".join(f"+{d:.1f}s" for d in self.delays)
        answers = [answer.status for answer in self.answers]
        return f"#{self.seq} {self.action}{named}: sent {sent} -> {answers}"


def _ids(value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    found = [item.get("id") if isinstance(item, dict) else item for item in items]
    return tuple(i for i in found if isinstance(i, int))


def _summary(body: bytes) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """``(action, task ids, annotation ids)`` named by a webhook body."""
    try:
        payload = json.loads(body)
    except ValueError:
        return "UNPARSABLE", (), ()
    tasks = _ids(payload.get("tasks", payload.get("task")))
    annotations = _ids(payload.get("annotations", payload.get("annotation")))
    if not tasks and isinstance(payload.get("annotation"), dict):
        tasks = _ids(payload["annotation"].get("task"))
    return str(payload.get("action")), tasks, annotations


@dataclass(order=True)
class _Copy:
    due: float
    order: int
    event: Relayed = field(compare=False)
    path: str = field(compare=False)
    headers: dict[str, str] = field(compare=False)
    body: bytes = field(compare=False)


class WebhookRelay:
    """``with WebhookRelay(backend_url, policy, seed) as relay:`` point a webhook at
    ``relay.url``; :meth:`settle` waits until every copy due has been delivered."""

    def __init__(self, target: str, policy: RelayPolicy, seed: int | str) -> None:
        self.target = target.rstrip("/")
        self.policy = policy
        self.events: list[Relayed] = []
        self._rng = random.Random(seed)
        self._due: list[_Copy] = []
        self._order = 0
        self._outstanding = 0
        self._closing = False
        self._cond = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._deliver_forever, daemon=True),
        ]
        self._http = httpx.Client(timeout=DELIVERY_TIMEOUT)

    def __enter__(self) -> WebhookRelay:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=DELIVERY_TIMEOUT + 5)
        self._http.close()

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until every copy decided so far has been delivered (or failed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._outstanding:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._outstanding} webhook copies still undelivered")
                self._cond.wait(timeout=left)

    def log(self, start: int = 0) -> list[str]:
        """One line per event from ``start`` on (call after :meth:`settle`)."""
        with self._cond:
            return [event.describe() for event in self.events[start:]]

    def receive(self, path: str, headers: dict[str, str], body: bytes) -> None:
        """Record one webhook and schedule its copies (called by the HTTP handler)."""
        action, tasks, annotations = _summary(body)
        now, policy, rng = time.monotonic(), self.policy, self._rng
        with self._cond:
            copies = (
                0 if rng.random() < policy.drop else 2 if rng.random() < policy.duplicate else 1
            )
            delays = tuple(
                rng.uniform(0.0, policy.max_delay) if rng.random() < policy.delay else 0.0
                for _ in range(copies)
            )
            event = Relayed(len(self.events) + 1, action, tasks, annotations, delays)
            self.events.append(event)
            for delay in delays:
                self._order += 1
                heapq.heappush(
                    self._due, _Copy(now + delay, self._order, event, path, headers, body)
                )
            self._outstanding += copies
            self._cond.notify_all()

    def _deliver_forever(self) -> None:
        while True:
            with self._cond:
                while not self._closing and not self._ready():
                    wait = self._due[0].due - time.monotonic() if self._due else None
                    self._cond.wait(timeout=wait)
                if self._closing:
                    return
                copy = heapq.heappop(self._due)
            answer = self._post(copy)
            with self._cond:
                copy.event.answers.append(answer)
                self._outstanding -= 1
                self._cond.notify_all()

    def _ready(self) -> bool:
        return bool(self._due) and self._due[0].due <= time.monotonic()

    def _post(self, copy: _Copy) -> Answer:
        sent = time.monotonic()
        try:
            response = self._http.post(
                self.target + copy.path, content=copy.body, headers=copy.headers
            )
        except httpx.HTTPError as exc:
            return Answer(type(exc).__name__, sent, time.monotonic())
        return Answer(response.status_code, sent, time.monotonic())


def _handler(relay: WebhookRelay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            relay.receive(self.path, headers, body)
            reply = b'{"status": "relayed"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
