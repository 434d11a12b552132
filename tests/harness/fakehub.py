"""A fake Hugging Face Hub: a real HTTP server on 127.0.0.1 speaking the routes huggingface_hub 2.x calls.

Point ``HF_ENDPOINT`` at :attr:`FakeHub.url` and huggingface_hub downloads, lists and caches through it as it
does against huggingface.co. Routes (read from huggingface_hub's ``file_download.py`` and ``hf_api.py``):

- ``HEAD``/``GET /{org}/{name}/resolve/{revision}/{path}``: file bytes with ``ETag`` (the git blob sha1, or
  the sha256 for LFS-type files like the hub's ``X-Linked-Etag``), ``X-Repo-Commit``, ``Content-Length``,
  ``Accept-Ranges`` and ``Range`` support (206 with ``Content-Range``); a missing file is 404 with
  ``X-Error-Code: EntryNotFound``.
- ``GET /api/models/{org}/{name}[/revision/{revision}]``: model info (``sha``, ``siblings``; sizes with
  ``blobs``).
- ``GET /api/models/{org}/{name}/tree/{revision}[/{path}]``: the file tree (``recursive``), paginated with a
  ``Link: <...>; rel="next"`` header like the hub.

Unknown repos answer ``X-Error-Code: RepoNotFound``, unknown revisions ``RevisionNotFound``; any other route
is answered 404 and recorded in :attr:`FakeHub.unknown`, so a test sees what a newer huggingface_hub asks for.
Faults for tests: cut the connection mid-file, answer a status code, serve other bytes, demand a token.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".pt", ".bin", ".safetensors", ".pth", ".ckpt", ".npz", ".parquet")
_STATUS_TEXT = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error"}


@dataclass(frozen=True)
class LoggedRequest:
    """One request the server answered: what was asked and with which status."""

    method: str
    path: str  # URL path, percent-decoded, without the query
    query: str
    range: str | None
    authorization: str | None
    status: int

    @property
    def is_file_body(self) -> bool:
        """True for a GET of a file's bytes (a download), as opposed to a HEAD or an API call."""
        return self.method == "GET" and "/resolve/" in self.path


@dataclass
class _Repo:
    """A served repo: one commit with its files, reachable as branch "main" or by its sha."""

    files: dict[str, bytes]
    sha: str
    branches: set[str] = field(default_factory=lambda: {"main"})


@dataclass
class _Fault:
    """Faults armed for one file: cut after N bytes, answer a status, serve other bytes (they combine)."""

    cut_after: int | None = None
    times: int = 0  # how many more GETs the cut applies to
    status: int | None = None
    data: bytes | None = None


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of some bytes (the hub's `oid` and ETag of a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(path: str) -> bool:
    """Whether the hub would store this path with LFS (weights and checkpoints)."""
    return path.endswith(LFS_SUFFIXES)


def _commit_sha(files: dict[str, bytes]) -> str:
    """A deterministic 40-hex commit id for a set of files."""
    digest = hashlib.sha1()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + git_blob_sha1(files[path]).encode())
    return digest.hexdigest()


class FakeHub:
    """The fake hub's state (repos, faults, request log) and its HTTP server thread."""

    def __init__(self, page_size: int = 1000) -> None:
        self.page_size = page_size  # tree entries per page, as the hub's (lower it to exercise pagination)
        self._repos: dict[str, _Repo] = {}
        self._faults: dict[tuple[str, str], _Fault] = {}
        self._token: str | None = None
        self._log: list[LoggedRequest] = []
        self._unknown: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeHub:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakehub", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FakeHub:
        """Start on entering a with-block."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop on leaving a with-block."""
        self.close()

    @property
    def url(self) -> str:
        """The endpoint to put in HF_ENDPOINT."""
        if self._server is None:
            raise RuntimeError("the fake hub is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, repo_id: str, files: dict[str, bytes]) -> str:
        """Serve a model repo (replacing one of the same id) and return its commit sha."""
        sha = _commit_sha(files)
        with self._lock:
            self._repos[repo_id] = _Repo(files=dict(files), sha=sha)
        return sha

    def remove_repo(self, repo_id: str) -> None:
        """Stop serving a repo."""
        with self._lock:
            self._repos.pop(repo_id, None)

    def commit(self, repo_id: str) -> str:
        """The commit sha a repo's "main" resolves to."""
        with self._lock:
            return self._repos[repo_id].sha

    def file_bytes(self, repo_id: str, path: str) -> bytes:
        """The bytes stored for a file (regardless of faults)."""
        with self._lock:
            return self._repos[repo_id].files[path]

    def cut_connection(self, repo_id: str, path: str, after_bytes: int, times: int = 1) -> None:
        """Close the connection after `after_bytes` bytes of the file's body, for the next `times` GETs."""
        with self._lock:
            fault = self._faults.setdefault((repo_id, path), _Fault())
            fault.cut_after, fault.times = after_bytes, times

    def answer_status(self, repo_id: str, path: str, status: int) -> None:
        """Answer every request for the file with an HTTP error status (404, 401, 403, 500...)."""
        with self._lock:
            self._faults.setdefault((repo_id, path), _Fault()).status = status

    def serve_bytes(self, repo_id: str, path: str, data: bytes) -> None:
        """Serve other bytes for the file (its ETag and size follow them, as after a re-upload)."""
        with self._lock:
            self._faults.setdefault((repo_id, path), _Fault()).data = data

    def require_token(self, token: str | None) -> None:
        """Demand `Authorization: Bearer <token>` on every request (None: open again)."""
        with self._lock:
            self._token = token

    def reset_faults(self) -> None:
        """Disarm every fault and the token check."""
        with self._lock:
            self._faults.clear()
            self._token = None

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request answered since the last clear_log(), oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def unknown(self) -> list[LoggedRequest]:
        """Requests for routes the fake hub does not implement."""
        with self._lock:
            return list(self._unknown)

    def file_downloads(self) -> list[LoggedRequest]:
        """The GETs of file bodies since the last clear_log()."""
        return [request for request in self.requests if request.is_file_body]

    def clear_log(self) -> None:
        """Forget the requests logged so far."""
        with self._lock:
            self._log.clear()
            self._unknown.clear()

    def _record(self, request: LoggedRequest, known: bool) -> None:
        """Append to the log (and to the unknown-route log)."""
        with self._lock:
            self._log.append(request)
            if not known:
                self._unknown.append(request)

    def _lookup(self, repo_id: str, revision: str) -> tuple[_Repo | None, str | None]:
        """(repo, None) when repo and revision exist, else (None, the hub's X-Error-Code)."""
        with self._lock:
            repo = self._repos.get(repo_id)
        if repo is None:
            return None, "RepoNotFound"
        if revision not in repo.branches and revision != repo.sha:
            return None, "RevisionNotFound"
        return repo, None

    def _served(self, repo_id: str, repo: _Repo, path: str) -> tuple[bytes | None, _Fault | None]:
        """The bytes served for a path (a replacement if armed) and the armed fault."""
        with self._lock:
            fault = self._faults.get((repo_id, path))
        if fault is not None and fault.data is not None:
            return fault.data, fault
        return repo.files.get(path), fault

    def _take_cut(self, repo_id: str, path: str) -> int | None:
        """Consume one armed connection cut for the file, returning after how many bytes to cut."""
        with self._lock:
            fault = self._faults.get((repo_id, path))
            if fault is None or fault.cut_after is None or fault.times <= 0:
                return None
            fault.times -= 1
            return fault.cut_after

    def _token_ok(self, authorization: str | None) -> bool:
        """Whether the request passes the token check."""
        with self._lock:
            token = self._token
        return token is None or authorization == f"Bearer {token}"


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of one `bytes=a-b`, `bytes=a-` or `bytes=-n` range; None if unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    if first == "":
        length = int(last)
        start, end = max(size - length, 0), size - 1
    else:
        start = int(first)
        end = int(last) if last else size - 1
    end = min(end, size - 1)
    return (start, end) if 0 <= start <= end else None


class _Handler(BaseHTTPRequestHandler):
    """Answers one connection's requests from the FakeHub bound as the class attribute `hub`."""

    hub: FakeHub
    protocol_version = "HTTP/1.1"
    server_version = "fakehub/1.0"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        """Keep the test output quiet; requests are in the hub's log instead."""

    def _parts(self) -> tuple[list[str], str]:
        """The raw path split into percent-decoded segments, and the raw query."""
        split = urlsplit(self.path)
        return [unquote(segment) for segment in split.path.split("/")[1:]], split.query

    def _log(self, status: int, known: bool = True) -> None:
        """Record this request."""
        split = urlsplit(self.path)
        self.hub._record(
            LoggedRequest(
                method=self.command,
                path=unquote(split.path),
                query=split.query,
                range=self.headers.get("Range"),
                authorization=self.headers.get("Authorization"),
                status=status,
            ),
            known,
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str], known: bool = True) -> None:
        """Send a complete response (no body for HEAD) and log it."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._log(status, known)

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None, known: bool = True) -> None:
        """Send a JSON response."""
        body = json.dumps(payload).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})}, known)

    def _error(
        self,
        status: int,
        code: str | None,
        message: str,
        extra: dict[str, str] | None = None,
        known: bool = True,
    ) -> None:
        """An error the way the hub sends it: X-Error-Code / X-Error-Message headers and a JSON body."""
        headers = {"X-Error-Message": message, **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers, known)

    def _drain_body(self) -> None:
        """Read and drop a request body so the connection can be reused."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's naming
        """HEAD: file metadata."""
        self._dispatch()

    def do_GET(self) -> None:  # noqa: N802
        """GET: file bytes or API JSON."""
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        """POST: not implemented by the fake hub (recorded as unknown)."""
        self._drain_body()
        self._dispatch()

    def _dispatch(self) -> None:
        """Route the request."""
        parts, query = self._parts()
        if not self.hub._token_ok(self.headers.get("Authorization")):
            if self.headers.get("Authorization"):
                self._error(401, None, "Invalid credentials in Authorization header")
            else:
                self._error(401, "RepoNotFound", "Repository not found")
            return
        if len(parts) >= 5 and parts[2] == "resolve" and self.command in ("GET", "HEAD"):
            self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        elif len(parts) >= 4 and parts[:2] == ["api", "models"] and self.command == "GET":
            repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
            params = parse_qs(query)
            if not rest:
                self._model_info(repo_id, "main", params)
            elif rest[0] == "revision" and len(rest) >= 2:
                self._model_info(repo_id, "/".join(rest[1:]), params)
            elif rest[0] == "tree" and len(rest) >= 2:
                self._tree(repo_id, rest[1], "/".join(rest[2:]).strip("/"), params)
            else:
                self._error(404, None, "route not implemented by the fake hub", known=False)
        else:
            self._send(404, b"not implemented by the fake hub", {"Content-Type": "text/plain"}, known=False)

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        """HEAD/GET of a file at a revision, with Range support and the armed faults."""
        repo, error = self.hub._lookup(repo_id, revision)
        if repo is None:
            self._error(404, error, f"{error} for {repo_id}@{revision}")
            return
        commit = {"X-Repo-Commit": repo.sha}
        data, fault = self.hub._served(repo_id, repo, path)
        if fault is not None and fault.status is not None:
            code = "EntryNotFound" if fault.status == 404 else None
            self._error(fault.status, code, _STATUS_TEXT.get(fault.status, "error"), commit)
            return
        if data is None:
            self._error(404, "EntryNotFound", "Entry not found", commit)
            return
        etag = hashlib.sha256(data).hexdigest() if _is_lfs(path) else git_blob_sha1(data)
        headers = {
            **commit,
            "ETag": f'"{etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status, start, end = 200, 0, len(data) - 1
        range_header = self.headers.get("Range")
        if range_header and self.command == "GET":
            span = _parse_range(range_header, len(data))
            if span is None:
                self._send(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
                return
            status, (start, end) = 206, span
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        body = data[start : end + 1]
        cut = self.hub._take_cut(repo_id, path) if self.command == "GET" else None
        if cut is None:
            self._send(status, body, headers)
            return
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self._log(status)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _model_info(self, repo_id: str, revision: str, params: dict[str, list[str]]) -> None:
        """Model info at a revision: id, sha and siblings (with sizes and blob ids when `blobs` is set)."""
        repo, error = self.hub._lookup(repo_id, revision)
        if repo is None:
            self._error(404, error, f"{error} for {repo_id}@{revision}")
            return
        blobs = params.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path in sorted(repo.files):
            data, _ = self.hub._served(repo_id, repo, path)
            if data is None:
                continue
            sibling: dict[str, object] = {"rfilename": path}
            if blobs:
                sibling.update(size=len(data), blobId=git_blob_sha1(data))
                if _is_lfs(path):
                    sibling["lfs"] = {
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "size": len(data),
                        "pointerSize": 134,
                    }
            siblings.append(sibling)
        info = {
            "_id": repo.sha[:24],
            "id": repo_id,
            "modelId": repo_id,
            "sha": repo.sha,
            "private": False,
            "gated": False,
            "disabled": False,
            "tags": [],
            "lastModified": "2024-09-01T00:00:00.000Z",
            "siblings": siblings,
        }
        expand = params.get("expand")
        if expand:  # the hub then answers only the asked properties
            info = {key: value for key, value in info.items() if key in {"_id", "id", *expand}}
        self._json(200, info)

    def _tree(self, repo_id: str, revision: str, folder: str, params: dict[str, list[str]]) -> None:
        """The tree under a folder (recursive or one level), one page at a time."""
        repo, error = self.hub._lookup(repo_id, revision)
        if repo is None:
            self._error(404, error, f"{error} for {repo_id}@{revision}")
            return
        recursive = params.get("recursive", ["false"])[0].lower() == "true"
        entries = list(self._tree_entries(repo_id, repo, folder, recursive))
        if folder and not entries:
            self._error(404, "EntryNotFound", f"{folder} does not exist at {revision}", {"X-Repo-Commit": repo.sha})
            return
        cursor = int(params.get("cursor", ["0"])[0])
        page = entries[cursor : cursor + self.hub.page_size]
        headers: dict[str, str] = {}
        if cursor + self.hub.page_size < len(entries):
            base = f"{self.hub.url}/api/models/{repo_id}/tree/{quote(revision, safe='')}"
            if folder:
                base += "/" + quote(folder, safe="")
            expand = params.get("expand", ["false"])[0]
            following = f"{base}?recursive={str(recursive).lower()}&expand={expand}&cursor={cursor + len(page)}"
            headers["Link"] = f'<{following}>; rel="next"'
        self._json(200, page, headers)

    def _tree_entries(self, repo_id: str, repo: _Repo, folder: str, recursive: bool) -> Iterator[dict[str, object]]:
        """Folder and file entries under `folder`: folders first, then files, each sorted."""
        prefix = f"{folder}/" if folder else ""
        folders: set[str] = set()
        files: list[str] = []
        for path in sorted(repo.files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                if depth == 1 or recursive:
                    folders.add(prefix + "/".join(parts[:depth]))
            if len(parts) == 1 or recursive:
                files.append(path)
        for name in sorted(folders):
            yield {
                "type": "directory",
                "oid": hashlib.sha1(name.encode()).hexdigest(),
                "size": 0,
                "path": name,
            }
        for path in files:
            data, _ = self.hub._served(repo_id, repo, path)
            if data is not None:
                yield _entry(path, data)


def _entry(path: str, data: bytes) -> dict[str, object]:
    """A file entry of the tree API (with its LFS pointer info for LFS-type files)."""
    entry: dict[str, object] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
    if _is_lfs(path):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


class FetchedCache(NamedTuple):
    """A saetui cache root filled by `saetui fetch`, and the environment that points saetui at it."""

    cache_dir: Path
    env: dict[str, str]


def serve_clip_scope(hub: FakeHub, seed: int = 0) -> None:
    """Serve the tiny CLIP-Scope repo and the tiny model repo under their real ids."""
    from harness.tiny import MODEL_REPO, SCOPE_REPO, scope_repo_files, tiny_model_repo_files

    hub.add_repo(SCOPE_REPO, scope_repo_files(seed))
    hub.add_repo(MODEL_REPO, tiny_model_repo_files(seed))


_SCRUBBED_PREFIXES = ("HF_", "HUGGING_FACE_", "HUGGINGFACE_", "SAETUI_")


def hub_environment(endpoint: str, root: Path) -> dict[str, str]:
    """Environment for a saetui subprocess that talks to `endpoint` and keeps every file under `root`.

    No token (HF_HOME is private and HF_TOKEN unset), no telemetry, no user config file. HF_HUB_DISABLE_XET
    is not needed: the fake hub sends no X-Xet-Hash header, so huggingface_hub downloads over plain HTTP even
    when hf_xet is installed.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SCRUBBED_PREFIXES) and key != "TRANSFORMERS_OFFLINE"
    }
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(root / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        SAETUI_CACHE=str(root / "cache"),
        SAETUI_CONFIG=str(root / "config.toml"),
    )
    return env


def copy_cache(source: Path, target: Path) -> Path:
    """Copy a saetui cache root, keeping huggingface_hub's relative snapshot symlinks; returns target."""
    shutil.copytree(source, target, symlinks=True)
    return target
