"""A fake OpenAI-compatible vision-language model: a real HTTP server on 127.0.0.1 that checks each request.

POST /v1/chat/completions must carry JSON with the expected model, a messages list of role/content objects and
at least one image part whose data URL decodes as an image (else 400/404 in OpenAI's error shape). Answers are
deterministic functions of the images:

- one image (an explanation grid): "mostly <colour>" for the nearest named colour of the grid's mean pixel, plus
  the grid's size, so equal grids give equal explanations;
- three images (a Sort Eval trial: grid 1, grid 2, held-out image): "1" or "2", whichever grid's mean colour is
  nearer the held-out image's (a judge that sees colour only).

Faults are queued per request: 429 with Retry-After, 500, a malformed body, or a slow answer.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 220, 40),
    "purple": (150, 50, 180),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
    "brown": (130, 90, 50),
}


@dataclass
class SeenRequest:
    """What one accepted request carried."""

    model: str
    texts: list[str]
    images: list[Image.Image]
    headers: dict[str, str]


@dataclass
class FakeVlm:
    """The server; start() binds a free port, url is its /v1 base."""

    model: str = "fake-vlm"
    api_key: str | None = None
    seen: list[SeenRequest] = field(default_factory=list)
    attempts: int = 0
    faults: deque[tuple[str, float]] = field(default_factory=deque)
    delay: float = 0.0  # seconds added to every answer

    def __post_init__(self) -> None:
        """No server yet."""
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> FakeVlm:
        """Serve on 127.0.0.1 in a daemon thread."""
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, name="fake-vlm", daemon=True).start()
        return self

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeVlm:
        """Start on entering a with-block."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop on leaving it."""
        self.close()

    @property
    def url(self) -> str:
        """The base URL clients are given (ends in /v1)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def fail_next(self, kind: str, value: float = 1.0) -> None:
        """Queue a fault for the next request: '429' (Retry-After value), '500', 'malformed' or 'slow' (seconds)."""
        self.faults.append((kind, value))

    def answer(self, images: list[Image.Image]) -> str:
        """The deterministic answer for a request's images."""
        means = [np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0) for image in images]
        if len(images) == 3:
            first, second, held = means
            return "1" if np.linalg.norm(held - first) <= np.linalg.norm(held - second) else "2"
        name = min(COLOURS, key=lambda c: float(np.linalg.norm(means[0] - np.asarray(COLOURS[c]))))
        return f"Mostly {name} ({images[0].width}x{images[0].height} grid)."


class _Handler(BaseHTTPRequestHandler):
    """Request handler bound to one FakeVlm."""

    fake: FakeVlm

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        """Keep the test output clean."""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Send a response."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """An OpenAI-shaped error."""
        self._send(
            status, json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode(), headers
        )

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        """Check the request, apply a queued fault, answer."""
        fake = self.fake
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with fake._lock:
            fake.attempts += 1
            fault = fake.faults.popleft() if fake.faults else None
        if self.path != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            self._error(401, "invalid api key")
            return
        if fault is not None:
            kind, value = fault
            if kind == "429":
                self._error(429, "rate limit reached", {"Retry-After": f"{value:g}"})
                return
            if kind == "500":
                self._error(500, "internal error")
                return
            if kind == "malformed":
                self._send(200, b'{"choices": [ {"message": ')
                return
            if kind == "slow":
                time.sleep(value)
        try:
            request = json.loads(body)
            model, messages = request["model"], request["messages"]
            assert isinstance(messages, list) and messages
        except (json.JSONDecodeError, KeyError, AssertionError, TypeError):
            self._error(400, "body is not a chat-completions request")
            return
        if model != fake.model:
            self._error(404, f"model {model!r} not found")
            return
        texts: list[str] = []
        images: list[Image.Image] = []
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
                self._error(400, "every message needs a role")
                return
            content = message.get("content")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for part in parts or []:
                if part.get("type") == "text":
                    texts.append(str(part["text"]))
                elif part.get("type") == "image_url":
                    image = _decode(part.get("image_url", {}).get("url", ""))
                    if image is None:
                        self._error(400, "an image part does not decode as an image")
                        return
                    images.append(image)
                else:
                    self._error(400, f"unknown content part {part.get('type')!r}")
                    return
        if not images:
            self._error(400, "no image part in the request")
            return
        with fake._lock:
            fake.seen.append(SeenRequest(model, texts, images, dict(self.headers)))
        if fake.delay:
            time.sleep(fake.delay)
        text = fake.answer(images)
        usage = {"prompt_tokens": 100 * len(images) + sum(len(t.split()) for t in texts), "completion_tokens": 5}
        answer = {
            "id": f"chatcmpl-{fake.attempts}",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]},
        }
        self._send(200, json.dumps(answer).encode())


def _decode(url: str) -> Image.Image | None:
    """The image of a data URL, or None when it is not one."""
    if not url.startswith("data:image/") or ";base64," not in url:
        return None
    try:
        data = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        image = Image.open(io.BytesIO(data))
        image.load()
    except (binascii.Error, OSError, ValueError):
        return None
    return image
