"""A small Hugging Face Hub-protocol server for tests (standard library only, 127.0.0.1, in memory).

It speaks what ``huggingface_hub`` 2.x (httpx) sends for: ``create_repo`` (``POST /api/repos/create``),
``create_branch`` / ``list_repo_refs``, ``preupload`` (weights and data files "lfs", the rest "regular"), the
git-LFS batch upload (``basic`` transfer: PUT + verify), ``create_commit`` (ndjson, ``create_pr``),
``model_info`` / ``dataset_info`` / ``repo_info`` (also at a revision), ``list_repo_tree``, ``get_paths_info``,
``list_repo_commits``, ``whoami``, ``validate-yaml`` (README metadata) and file downloads (``GET``/``HEAD``
``/{repo}/resolve/{revision}/{path}`` with ``ETag``, ``X-Repo-Commit``, ``Location``, ``Content-Length`` and
``Range``). That is enough for ``transformers``' ``push_to_hub`` / ``from_pretrained``, the Trainer's checkpoint
pushes, and ``datasets``' ``push_to_hub`` / ``load_dataset``. Errors carry ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``) as the Hub does, so clients raise the same exceptions.

Clients find it through ``HF_ENDPOINT`` (read when ``huggingface_hub`` is imported, so tests run clients in a
subprocess with :meth:`LocalHub.env`), with ``HF_HUB_DISABLE_XET=1`` and a temporary ``HF_HOME``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_sha(content: bytes) -> str:
    """The git object id of a blob, which the Hub uses as a regular file's ETag and ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    message: str
    parent: str | None
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    refs: dict[str, str] = field(default_factory=dict)  # branch (or refs/pr/N) -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)
    num_prs: int = 0

    def resolve(self, revision: str) -> Commit | None:
        sha = self.refs.get(revision, revision)
        return self.commits.get(sha)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a client that gives up on a connection (a cancelled upload future, a closed keep-alive) is not a server bug
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class LocalHub:
    """The server and its in-memory repos. ``start()`` binds 127.0.0.1 on a free port; ``requests`` logs
    ``(method, path, status)`` of every call, so tests can check what the clients did."""

    def __init__(self):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, uploaded through the LFS batch protocol
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._counter = 0

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> "LocalHub":
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self, hf_home) -> dict[str, str]:
        """Environment for a client process: this endpoint, no Xet, a token, a private cache."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(hf_home),
            "HF_TOKEN": "hf_local_test_token",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "NO_PROXY": "127.0.0.1,localhost",
        }

    # -- repo state ---------------------------------------------------------------------------------------------
    def _new_sha(self, *parts: str) -> str:
        self._counter += 1
        return hashlib.sha1("\0".join((str(self._counter), *parts)).encode()).hexdigest()

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> Repo:
        with self.lock:
            if (repo_type, repo_id) in self.repos:  # the Hub's 409 names the existing repo's url
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}",
                               url=f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}")
            repo = Repo(repo_type, repo_id, private)
            # the Hub starts every repo with one commit holding .gitattributes
            attributes = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
            first = Commit(self._new_sha(repo_id), {".gitattributes": attributes}, "initial commit", None)
            repo.commits[first.sha] = first
            repo.refs["main"] = first.sha
            self.repos[(repo_type, repo_id)] = repo
            return repo

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository Not Found for url: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def commit_at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def commit(self, repo: Repo, revision: str, lines: list[dict], create_pr: bool) -> tuple[Commit, str | None]:
        with self.lock:
            base = self.commit_at(repo, revision)
            header = next((item["value"] for item in lines if item["key"] == "header"), {})
            parent = header.get("parentCommit")
            if parent and parent != base.sha:
                raise HubError(412, f"Parent commit {parent} is not the head of {revision}.")
            files = dict(base.files)
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"unsupported encoding {value.get('encoding')}")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: c for p, c in files.items() if not p.startswith(prefix)}
                elif key == "lfsFile":
                    if value["oid"] not in self.lfs_objects:
                        raise HubError(400, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                    files[value["path"]] = self.lfs_objects[value["oid"]]
                elif key != "header":
                    raise HubError(400, f"unknown commit operation {key!r}")
            new = Commit(self._new_sha(repo.repo_id, revision), files, header.get("summary", ""), base.sha)
            repo.commits[new.sha] = new
            pr_url = None
            if create_pr:
                repo.num_prs += 1
                repo.refs[f"refs/pr/{repo.num_prs}"] = new.sha
                pr_url = f"{self.url}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}/discussions/{repo.num_prs}"
            elif revision in repo.refs:
                repo.refs[revision] = new.sha
            else:
                raise HubError(400, f"Cannot commit to {revision}: not a branch (create it with create_branch).")
            return new, pr_url


def _tree_entries(files: dict[str, bytes], path: str, recursive: bool) -> list[dict]:
    """Hub ``tree`` entries under ``path`` (``""`` = root): files and the folders implied by their paths."""
    prefix = path.strip("/") + "/" if path.strip("/") else ""
    entries: dict[str, dict] = {}
    for name, content in sorted(files.items()):
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix):].split("/")
        for depth in range(1, len(parts)):
            folder = prefix + "/".join(parts[:depth])
            if recursive or depth == 1:
                entries.setdefault(folder, {"type": "directory", "oid": git_blob_sha(folder.encode()), "size": 0,
                                            "path": folder})
            if not recursive:
                break
        if recursive or len(parts) == 1:
            entries[name] = {"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": name}
    return list(entries.values())


_LFS_SUFFIXES = (".safetensors", ".parquet", ".arrow", ".bin", ".pt", ".pth", ".npz")


def _upload_mode(path: str, size: int) -> str:
    """As the Hub's default .gitattributes: weights and data files (and anything over 10 MB) go through LFS."""
    return "lfs" if path.endswith(_LFS_SUFFIXES) or size > 10 * 2**20 else "regular"


def _front_matter_errors(readme: str) -> list[str]:
    """What the Hub's ``validate-yaml`` would refuse, in the part a stdlib server can check: the README's YAML
    front matter must be closed and made of ``key: value`` lines (or list items / indented continuations)."""
    if not readme.startswith("---\n"):
        return []  # no metadata block is allowed
    end = readme.find("\n---", 4)
    if end < 0:
        return ["the metadata block opened by '---' is never closed"]
    errors = []
    for line in readme[4:end].splitlines():
        if line.strip() and not (line[:1] in (" ", "-") or re.fullmatch(r"[\w-]+:( .*)?", line)):
            errors.append(f"not a 'key: value' line: {line!r}")
    return errors


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: LocalHub

    def log_message(self, *args):  # quiet: the hub records requests itself
        pass

    # -- plumbing -----------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server_hub.requests.append((self.command, self.path, status))

    def _json(self, data, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(data).encode(), headers)

    def _dispatch(self):
        try:
            self._route()
        except HubError as err:
            headers = {"X-Error-Code": err.code} if err.code else {}
            headers["X-Error-Message"] = err.message
            self._json({"error": err.message, **err.extra}, err.status, headers)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = lambda self: self._dispatch()  # noqa: E731

    # -- routes -------------------------------------------------------------------------------------------------
    def _route(self):
        hub = self.server_hub
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        method = self.command

        if path == "/api/whoami-v2":
            return self._json({"type": "user", "name": "user", "fullname": "Test User", "orgs": [],
                               "auth": {"accessToken": {"displayName": "test", "role": "write"}}})
        if path == "/api/repos/create" and method == "POST":
            payload = json.loads(self._body() or b"{}")
            repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
            repo_type = payload.get("type") or "model"
            hub.create_repo(repo_type, repo_id, payload.get("private") or payload.get("visibility") == "private")
            url = f"{hub.url}/{_URL_PREFIX[repo_type]}{repo_id}"
            return self._json({"url": url, "name": repo_id, "id": repo_id})

        if path == "/api/validate-yaml" and method == "POST":
            errors = _front_matter_errors(json.loads(self._body())["content"])
            return self._json({"errors": [{"message": e} for e in errors], "warnings": []}, 400 if errors else 200)

        m = re.fullmatch(r"/(?:(datasets|spaces)/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            hub.repo(REPO_TYPES[m.group(1)] if m.group(1) else "model", m.group(2))
            objects = []
            for obj in json.loads(self._body())["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in hub.lfs_objects:  # the Hub omits actions for objects it already has
                    href = f"{hub.url}/_lfs/{obj['oid']}"
                    entry["actions"] = {"upload": {"href": href}, "verify": {"href": href + "/verify"}}
                objects.append(entry)
            return self._json({"transfer": "basic", "objects": objects})
        m = re.fullmatch(r"/_lfs/([0-9a-f]{64})(/verify)?", path)
        if m and method == "PUT" and not m.group(2):
            content = self._body()
            if hashlib.sha256(content).hexdigest() != m.group(1):
                raise HubError(400, "uploaded content does not match its sha256")
            hub.lfs_objects[m.group(1)] = content
            return self._send(200)
        if m and method == "POST" and m.group(2):
            self._body()
            if m.group(1) not in hub.lfs_objects:
                raise HubError(404, f"LFS object {m.group(1)} not found")
            return self._json({"success": True})

        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?", path)
        if m:
            repo = hub.repo(REPO_TYPES[m.group(1)], m.group(2))
            return self._api(repo, m.group(3) or "", query)

        m = re.fullmatch(r"/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and method in ("GET", "HEAD"):
            repo = hub.repo(REPO_TYPES[m.group(1)] if m.group(1) else "model", m.group(2))
            return self._resolve(repo, unquote(m.group(3)), unquote(m.group(4)))
        raise HubError(404, f"{method} {path} is not served by the test hub")

    def _info(self, repo: Repo, commit: Commit) -> dict:
        return {
            "id": repo.repo_id, "_id": repo.repo_id, "sha": commit.sha, "private": repo.private, "disabled": False,
            "gated": False, "downloads": 0, "likes": 0, "tags": [], "lastModified": commit.date,
            "createdAt": commit.date, "author": repo.repo_id.split("/")[0],
            "siblings": [
                {"rfilename": p, "size": len(c), "blobId": git_blob_sha(c)} for p, c in sorted(commit.files.items())
            ],
        }

    def _api(self, repo: Repo, rest: str, query: dict):
        hub, method = self.server_hub, self.command
        if rest == "" and method == "GET":
            return self._json(self._info(repo, hub.commit_at(repo, "main")))
        if rest.startswith("revision/") and method == "GET":
            return self._json(self._info(repo, hub.commit_at(repo, unquote(rest[len("revision/"):]))))
        if rest == "refs" and method == "GET":
            branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                        for name, sha in repo.refs.items() if not name.startswith("refs/")]
            prs = [{"name": name, "ref": name, "targetCommit": sha} for name, sha in repo.refs.items()
                   if name.startswith("refs/pr/")]
            return self._json({"branches": branches, "converts": [], "tags": [], "pullRequests": prs})
        if rest.startswith("branch/") and method == "POST":
            branch = unquote(rest[len("branch/"):])
            payload = json.loads(self._body() or b"{}")
            if branch in repo.refs:
                raise HubError(409, f"Reference {branch} already exists")
            repo.refs[branch] = hub.commit_at(repo, payload.get("startingPoint") or "main").sha
            return self._json({})
        if rest.startswith("preupload/") and method == "POST":
            hub.commit_at(repo, unquote(rest[len("preupload/"):]))
            files = json.loads(self._body())["files"]
            return self._json({"files": [{"path": f["path"], "uploadMode": _upload_mode(f["path"], f["size"]),
                                          "shouldIgnore": False} for f in files]})
        if rest.startswith("commit/") and method == "POST":
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            create_pr = query.get("create_pr", ["0"])[0] in ("1", "true", "True")
            new, pr_url = hub.commit(repo, unquote(rest[len("commit/"):]), lines, create_pr)
            return self._json({"commitUrl": f"{hub.url}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{new.sha}",
                               "commitOid": new.sha, "pullRequestUrl": pr_url, "success": True})
        if rest.startswith("commits/") and method == "GET":
            commit = hub.commit_at(repo, unquote(rest[len("commits/"):]))
            history = []
            while commit is not None:
                history.append({"id": commit.sha, "title": commit.message, "message": "", "authors": [{"user": "user"}],
                                "date": commit.date})
                commit = repo.commits.get(commit.parent) if commit.parent else None
            return self._json(history)
        if rest.startswith("tree/") and method == "GET":
            revision, _, sub = rest[len("tree/"):].partition("/")
            commit = hub.commit_at(repo, unquote(revision))
            sub = unquote(sub)
            if sub and sub not in commit.files and not any(p.startswith(sub.rstrip("/") + "/") for p in commit.files):
                raise HubError(404, f"{sub} does not exist at {revision}", "EntryNotFound")
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._json(_tree_entries(commit.files, sub, recursive))
        if rest.startswith("paths-info/") and method == "POST":
            commit = hub.commit_at(repo, unquote(rest[len("paths-info/"):]))
            body = self._body()
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(body).get("paths", [])
            else:
                paths = parse_qs(body.decode()).get("paths", [])
            entries = _tree_entries(commit.files, "", recursive=True)
            wanted = {p.strip("/") for p in paths}
            return self._json([e for e in entries if e["path"] in wanted])
        raise HubError(404, f"{method} /api/.../{rest} is not served by the test hub")

    def _resolve(self, repo: Repo, revision: str, file_path: str):
        commit = self.server_hub.commit_at(repo, revision)
        if file_path not in commit.files:
            raise HubError(404, f"Entry not found: {file_path} at {revision}", "EntryNotFound")
        content = commit.files[file_path]
        etag = git_blob_sha(content)
        # where the file lives at this exact commit (the Hub sends it with redirects; clients keep it as location)
        repo_url = f"{self.server_hub.url}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}"
        location = f"{repo_url}/resolve/{commit.sha}/{quote(file_path)}"
        headers = {"ETag": f'"{etag}"', "X-Repo-Commit": commit.sha, "Location": location, "Accept-Ranges": "bytes"}
        status = 200
        byte_range = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if byte_range and (byte_range.group(1) or byte_range.group(2)):
            start_s, end_s = byte_range.groups()
            if start_s:
                start, end = int(start_s), min(int(end_s) if end_s else len(content) - 1, len(content) - 1)
            else:  # suffix range: the last N bytes
                start, end = max(len(content) - int(end_s), 0), len(content) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start : end + 1], 206
        self._send(status, content, headers, content_type="application/octet-stream")
