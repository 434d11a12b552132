"""A client for OpenAI-compatible chat-completions endpoints (OpenAI, vLLM, SGLang, Ollama, ...), stdlib only.

One POST to `{base_url}/chat/completions` per request, with image parts as data URLs. Rate limits and transient
faults are retried: 429 waits for Retry-After (seconds or an HTTP date; capped), 5xx, timeouts, dropped
connections and malformed bodies back off exponentially, up to `retries` times; other 4xx answers stop at once.
Every failure that is not retried becomes one line naming the endpoint and what it said.
"""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from saetui.errors import NetworkError, UsageError

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_RETRIES = 5
MAX_WAIT_S = 60.0  # the longest a Retry-After is honoured for, and the backoff's cap
USER_AGENT = "saetui (OpenAI-compatible chat completions)"


@dataclass(frozen=True)
class Completion:
    """One answer: its text and what it cost."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    seconds: float
    attempts: int


class RateLimiter:
    """At most `per_second` request starts per second across threads (None: no limit)."""

    def __init__(self, per_second: float | None) -> None:
        """A limiter with no request made yet."""
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until the next request may start."""
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


@dataclass
class Endpoint:
    """An OpenAI-compatible chat endpoint: base URL (…/v1), model name and an optional API key."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(None))
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        """Check the URL's shape (a typo should fail before any image is prepared)."""
        if not self.base_url.startswith(("http://", "https://")):
            raise UsageError(f"endpoint {self.base_url!r} is not an http(s) URL", "e.g. http://localhost:8000/v1")
        if not self.model:
            raise UsageError("no model name given", "pass --model NAME (the name the server knows the model by)")
        self.base_url = self.base_url.rstrip("/")

    @property
    def url(self) -> str:
        """The chat-completions URL."""
        return f"{self.base_url}/chat/completions"

    def chat(self, messages: list[dict[str, Any]], max_tokens: int = 200, temperature: float = 0.0) -> Completion:
        """Send one chat request and return the first choice's text, retrying what is worth retrying."""
        body = json.dumps(
            {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        ).encode()
        started = time.perf_counter()
        problem = "no attempt made"
        for attempt in range(1, self.retries + 2):
            self.limiter.wait()
            wait, problem, answer = self._attempt(body)
            if answer is not None:
                text, usage = answer
                return Completion(
                    text,
                    usage.get("prompt_tokens"),
                    usage.get("completion_tokens"),
                    time.perf_counter() - started,
                    attempt,
                )
            if attempt <= self.retries:
                self.sleep(wait if wait is not None else min(MAX_WAIT_S, 0.5 * 2 ** (attempt - 1)))
        raise NetworkError(f"{self.url} failed {self.retries + 1} times; last: {problem}", "check the server")

    def _attempt(self, body: bytes) -> tuple[float | None, str, tuple[str, dict[str, Any]] | None]:
        """One POST: (seconds to wait before a retry or None for the backoff, what went wrong, the answer)."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            detail = _error_detail(error)
            if error.code == 429:
                return _retry_after(error.headers.get("Retry-After")), f"429 rate limited{detail}", None
            if error.code >= 500:
                return None, f"HTTP {error.code}{detail}", None
            raise NetworkError(
                f"{self.url} refused the request: HTTP {error.code}{detail}", _hint(error.code)
            ) from None
        except TimeoutError:
            return None, f"no answer within {self.timeout:g} s", None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                return None, f"no answer within {self.timeout:g} s", None
            if isinstance(reason, ConnectionRefusedError):
                raise NetworkError(f"cannot reach {self.url}: connection refused", "is the server running?") from None
            return None, f"cannot reach the server ({reason})", None
        except (ConnectionError, OSError) as error:
            return None, f"connection failed ({error})", None
        try:
            return None, "", parse_completion(raw)
        except ValueError as error:
            return None, str(error), None


def parse_completion(raw: bytes) -> tuple[str, dict[str, Any]]:
    """The first choice's message text and the usage block of a chat-completions body (ValueError if malformed)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"malformed JSON in the answer ({raw[:60]!r})") from None
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ValueError("the answer is not a chat completion (no choices[0].message.content)") from None
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        raise ValueError("the answer's message content is not text")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return content, usage


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), capped at MAX_WAIT_S."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, min(MAX_WAIT_S, seconds))


def _error_detail(error: urllib.error.HTTPError) -> str:
    """': message' from an error body in OpenAI's shape ({"error": {"message": ...}}), else its first words."""
    try:
        raw = error.read()
    except OSError:
        return ""
    try:
        data = json.loads(raw)
        message = data.get("error", {}).get("message") if isinstance(data.get("error"), dict) else data.get("error")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        message = raw.decode("utf-8", "replace").strip()
    message = " ".join(str(message or "").split())[:160]
    return f": {message}" if message else ""


def _hint(code: int) -> str:
    """What to check for a refused request."""
    if code in (401, 403):
        return "check the API key ($SAETUI_API_KEY or $OPENAI_API_KEY)"
    if code == 404:
        return "check --endpoint (it ends in /v1 for most servers) and --model"
    return "check --model and the server's limits (image size, tokens)"
