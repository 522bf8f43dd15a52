"""A local stand-in for the Hugging Face Hub's download API, for tests.

:class:`HubServer` serves in-memory model repos on ``127.0.0.1`` well enough for
``huggingface_hub.snapshot_download`` and ``hf_hub_download`` (checked against
huggingface_hub 2.4) when they are pointed at it with ``HF_ENDPOINT`` (set before
``huggingface_hub`` is imported, e.g. in a subprocess) or, in-process, with
:func:`use_endpoint`. The endpoints it answers are the ones those functions call:

* ``GET /api/models/{repo_id}[/revision/{revision}]``: model info (``sha``, ``siblings``).
* ``GET /api/models/{repo_id}/tree/{revision}``: the file listing (``path``, ``size``, ``oid``),
  always recursive and in one page.
* ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}``: file metadata
  (``X-Repo-Commit``, ``ETag``, ``Content-Length``) and bytes, with single-range
  ``Range: bytes=N-`` support for resumed downloads.

And the endpoints ``create_repo``, ``create_branch`` and ``upload_folder`` (``create_commit``)
use, so that publishing can be tested for real:

* ``POST /api/validate-yaml``: the model card's metadata is accepted.
* ``POST /api/repos/create``: a new empty repo (``main`` at an empty commit); 409 if it exists.
* ``POST /api/models/{repo_id}/branch/{branch}``: a branch at ``main``'s commit; 409 if it exists.
* ``POST /api/models/{repo_id}/preupload/{revision}``: every file ``regular`` (sent inline).
* ``POST /api/models/{repo_id}/commit/{revision}``: the NDJSON commit (header, base64 ``file``
  and ``deletedFile`` lines) applied on top of the revision, which then points at it.

Unknown repos, revisions and files get a 404 carrying the Hub's ``X-Error-Code``
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), so huggingface_hub raises
its own typed errors. Every request is logged in :attr:`HubServer.requests`, so a
test can assert that offline mode made none.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LOOPBACK = "127.0.0.1"
SHUTDOWN_POLL_S = 0.02  # serve_forever's shutdown check interval (default 0.5 s slows every test)
# ``{org}/{name}``: the Hub's canonical repo id has exactly one slash.
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_API_RE = re.compile(rf"^/api/models/{_REPO}(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+)(?P<sub>/.*)?)?$")
_RESOLVE_RE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE_RE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")
_WRITE_RE = re.compile(rf"^/api/models/{_REPO}/(?P<kind>preupload|commit|branch)/(?P<rev>[^/]+)$")


@dataclass(frozen=True)
class RequestRecord:
    """One request the server received."""

    method: str  # "GET", "HEAD" or "POST"
    path: str  # URL path, still percent-encoded, without the query string


@dataclass
class _Repo:
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag name -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> files
    private: bool = False
    messages: dict[str, str] = field(default_factory=dict)  # commit sha -> commit summary

    def commit_for(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


class HubServer:
    """A threaded loopback HTTP server holding model repos in memory.

    Use as a context manager (``with HubServer() as hub: ...``) or call
    :meth:`start` / :meth:`stop`. :attr:`url` is the value for ``HF_ENDPOINT``.
    """

    def __init__(self) -> None:
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._httpd: _HubHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # --- content -----------------------------------------------------------------

    def add_revision(
        self, repo_id: str, files: Mapping[str, bytes] | str | Path, *, revision: str = "main"
    ) -> str:
        """Publish ``files`` as the content of ``repo_id`` at branch ``revision``.

        Args:
            repo_id: ``org/name``.
            files: a mapping ``{path in repo: bytes}`` or a local folder whose files
                (recursively) become the repo content.
            revision: branch name that will point at the new commit.

        Returns:
            The 40-hex commit sha of the new revision (also usable as a revision).
        """
        if isinstance(files, (str, Path)):
            root = Path(files)
            files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        content = dict(files)
        digest = hashlib.sha1(f"{repo_id}@{revision}".encode())
        for name in sorted(content):
            digest.update(name.encode() + b"\0" + hashlib.sha256(content[name]).digest())
        commit = digest.hexdigest()
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            repo.commits[commit] = content
            repo.refs[revision] = commit
        return commit

    def repo(self, repo_id: str) -> _Repo | None:
        """A snapshot of ``repo_id`` (refs, commits, private flag, messages), None if absent."""
        import copy

        with self._lock:
            repo = self._repos.get(repo_id)
            return None if repo is None else copy.deepcopy(repo)

    def _create_repo(self, repo_id: str, *, private: bool) -> bool:
        """False if it exists already."""
        with self._lock:
            if repo_id in self._repos:
                return False
            commit = hashlib.sha1(f"{repo_id}@init".encode()).hexdigest()
            self._repos[repo_id] = _Repo(refs={"main": commit}, commits={commit: {}}, private=private)
            return True

    def _create_branch(self, repo_id: str, branch: str) -> str | None:
        """None when created, else the Hub error code."""
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                return "RepoNotFound"
            if branch in repo.refs:
                return "Conflict"
            repo.refs[branch] = repo.refs["main"]
            return None

    def _commit(self, repo_id: str, revision: str, ops: list[dict]) -> str:
        """Apply NDJSON commit lines on ``revision``; returns the new sha or an error code."""
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                return "RepoNotFound"
            parent = repo.commit_for(revision)
            if parent is None or revision not in repo.refs:
                return "RevisionNotFound"
            files = dict(repo.commits[parent])
            summary = ""
            for op in ops:
                value = op.get("value", {})
                if op.get("key") == "header":
                    summary = value.get("summary", "")
                elif op.get("key") == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif op.get("key") == "deletedFile":
                    files.pop(value["path"], None)
            digest = hashlib.sha1(parent.encode())
            for name in sorted(files):
                digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
            commit = digest.hexdigest()
            repo.commits[commit] = files
            repo.refs[revision] = commit
            repo.messages[commit] = summary
            return commit

    # --- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:54321``."""
        if self._port is None:
            raise RuntimeError("HubServer is not started")
        return f"http://{LOOPBACK}:{self._port}"

    def start(self) -> HubServer:
        """Bind a free loopback port and serve in a daemon thread; restarting reuses the port."""
        self._httpd = _HubHTTPServer((LOOPBACK, self._port or 0), _Handler)
        self._httpd.hub = self
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S}, name="hubserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket: later requests get "connection refused"."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request log -------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """Number of requests received so far."""
        with self._lock:
            return len(self._requests)

    # --- routing (called from handler threads) -------------------------------------

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self._requests.append(RequestRecord(method, path))

    def _lookup(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | str:
        """(commit, files) or the Hub error code explaining why there are none."""
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                return "RepoNotFound"
            commit = repo.commit_for(revision)
            if commit is None:
                return "RevisionNotFound"
            return commit, repo.commits[commit]


def _git_blob_oid(data: bytes) -> str:
    """The git blob sha1 the Hub reports as a (non-LFS) file's ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # handler threads never block interpreter exit
    hub: HubServer


class _Handler(BaseHTTPRequestHandler):
    """Routes the Hub's download endpoints to the ``HubServer`` that owns this server."""

    server: _HubHTTPServer
    # HTTP/1.0: one request per connection, so that a stopped server cannot keep
    # answering on a pooled keep-alive connection.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass  # keep test output clean; the request log is hub.requests

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch(send_body=False)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch(send_body=True)

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        path = urlsplit(self.path).path
        self.server.hub._record("POST", path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hub = self.server.hub
        if path == "/api/repos/create":
            req = json.loads(body or b"{}")
            repo_id = f"{req.get('organization')}/{req['name']}" if req.get("organization") else req["name"]
            private = bool(req.get("private")) or req.get("visibility") == "private"  # older / newer clients
            if not hub._create_repo(repo_id, private=private):
                self._error(409, "Conflict", f"You already created this model repo: {repo_id}",
                            extra={"url": f"{hub.url}/{repo_id}"})  # the Hub's 409 carries the url
                return
            self._json({"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id})
        elif path == "/api/validate-yaml":  # the model card's metadata, checked before a commit
            self._json({"errors": [], "warnings": []})
        elif m := _WRITE_RE.match(path):
            self._write(unquote(m["repo"]), m["kind"], unquote(m["rev"]), body)
        else:
            self._error(404, "RepoNotFound", f"no route for POST {path}")

    def _write(self, repo_id: str, kind: str, revision: str, body: bytes) -> None:
        hub = self.server.hub
        if kind == "branch":
            code = hub._create_branch(repo_id, revision)
            if code is None:
                self._json({})
            else:
                self._error(409 if code == "Conflict" else 404, code, f"{repo_id}: branch {revision}: {code}")
        elif kind == "preupload":
            if isinstance(found := hub._lookup(repo_id, revision), str):
                self._error(404, found, f"{repo_id}@{revision}: {found}")
                return
            files = json.loads(body or b"{}").get("files", [])
            self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                  for f in files]})
        else:
            ops = [json.loads(line) for line in body.splitlines() if line.strip()]
            commit = hub._commit(repo_id, revision, ops)
            if len(commit) != 40:
                self._error(404, commit, f"{repo_id}@{revision}: {commit}")
                return
            self._json({"commitUrl": f"{hub.url}/{repo_id}/commit/{commit}", "commitOid": commit,
                        "pullRequestUrl": None})

    def _json(self, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _dispatch(self, *, send_body: bool) -> None:
        path = urlsplit(self.path).path
        self.server.hub._record(self.command, path)
        if m := _RESOLVE_RE.match(path):
            self._resolve(unquote(m["repo"]), unquote(m["rev"]), unquote(m["file"]), send_body)
        elif (m := _API_RE.match(path)) and send_body:
            self._api(unquote(m["repo"]), m["kind"], unquote(m["rev"] or "main"), unquote(m["sub"] or ""))
        else:
            self._error(404, "RepoNotFound", f"no route for {path}")

    def _api(self, repo_id: str, kind: str | None, revision: str, sub: str) -> None:
        found = self.server.hub._lookup(repo_id, revision)
        if isinstance(found, str):
            self._error(404, found, f"{repo_id}@{revision}: {found}")
            return
        commit, files = found
        prefix = sub.strip("/")
        if kind == "tree":
            body = [
                {"type": "file", "path": name, "size": len(data), "oid": _git_blob_oid(data)}
                for name, data in sorted(files.items())
                if not prefix or name.startswith(prefix + "/")
            ]
        else:
            body = {
                "id": repo_id,
                "sha": commit,
                "private": False,
                "library_name": "avscene",
                "siblings": [{"rfilename": name} for name in sorted(files)],
            }
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _resolve(self, repo_id: str, revision: str, filename: str, send_body: bool) -> None:
        found = self.server.hub._lookup(repo_id, revision)
        if isinstance(found, str):
            self._error(404, found, f"{repo_id}@{revision}: {found}")
            return
        commit, files = found
        if filename not in files:
            self._error(404, "EntryNotFound", f"{filename} not in {repo_id}@{revision}", commit=commit)
            return
        data = files[filename]
        start, status = 0, 200
        if (rng := _RANGE_RE.match(self.headers.get("Range", ""))) and int(rng["start"]) < len(data):
            start, status = int(rng["start"]), 206
        self.send_response(status)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if send_body:
            self.wfile.write(data[start:])

    def _error(self, status: int, code: str, message: str, *, commit: str | None = None,
               extra: dict | None = None) -> None:
        payload = json.dumps({"error": message, **(extra or {})}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit is not None:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


@contextlib.contextmanager
def use_endpoint(url: str) -> Iterator[None]:
    """Point an already-imported ``huggingface_hub`` at ``url`` for the duration of the block.

    huggingface_hub reads ``HF_ENDPOINT`` once, at import, into
    ``constants.ENDPOINT`` and ``constants.HUGGINGFACE_CO_URL_TEMPLATE`` (the file URL
    template); this patches both, as setting ``HF_ENDPOINT`` before the import would.
    A subprocess with ``HF_ENDPOINT`` in its environment is the real user path.
    """
    from huggingface_hub import constants

    saved = (constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE)
    constants.ENDPOINT = url.rstrip("/")
    constants.HUGGINGFACE_CO_URL_TEMPLATE = constants.ENDPOINT + "/{repo_id}/resolve/{revision}/{filename}"
    try:
        yield
    finally:
        constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE = saved


class SilentServer:
    """A loopback TCP server that accepts every connection and never answers (a hung Hub).

    ``url`` is its address; :attr:`accepted` is set once a client has connected, so a test can
    act while a request is waiting, without sleeping. The connections are held until ``stop``.
    """

    def __init__(self) -> None:
        import socket

        self._sock = socket.socket()
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(64)
        self.url = f"http://{LOOPBACK}:{self._sock.getsockname()[1]}"
        self.accepted = threading.Event()
        self._conns: list = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed by stop()
                return
            self._conns.append(conn)
            self.accepted.set()

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        import socket

        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._sock.close()
        for conn in self._conns:
            conn.close()
        self._thread.join()
