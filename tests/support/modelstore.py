"""Helpers for the model store tests and any test that needs model files: a store on a real database,
model files written by the tests, and local HTTP servers standing in for what these machines cannot reach
(a plain file server, a mirror of the Hugging Face hub endpoints the official client uses, a mirror of
ModelScope's).

The hub clients are the real ones (``huggingface_hub``, ``modelscope``); only the network end is a
local server serving files the tests make.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import struct
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# The hub clients read their environment when first imported: keep them off ~/.cache and online.
_CLIENT_HOME = tempfile.mkdtemp(prefix="aima-hub-clients-")
atexit.register(shutil.rmtree, _CLIENT_HOME, True)
os.environ["HF_HOME"] = os.path.join(_CLIENT_HOME, "hf")
os.environ["MODELSCOPE_CACHE"] = os.path.join(_CLIENT_HOME, "modelscope")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
for _v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_TOKEN", "MODELSCOPE_ENDPOINT"):
    os.environ.pop(_v, None)

from aima.modelstore.store import ModelStore  # noqa: E402


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def staged(store: ModelStore) -> list[str]:
    """What is left under models/.partial, lock files aside."""
    if not store.staging_root.exists():
        return []
    return sorted(p.name for p in store.staging_root.iterdir() if not p.name.endswith(".lock"))


# ---------------------------------------------------------------------------- files the tests make
def write_gguf(path: Path, *, arch: str = "llama", n_ctx: int = 512, n_layer: int = 2,
               file_type: Any = None, pooling: bool = False) -> Path:
    """A tiny random-weight GGUF of 98 tokens (tests/support/tiny.py), with the metadata the scanner reads."""
    from tests.support.tiny import tiny_gguf

    return tiny_gguf(path, arch=arch, n_ctx=n_ctx, n_layer=n_layer, file_type=file_type, pooling=pooling,
                     words=False)


def gguf_param_count(n_layer: int = 2) -> int:
    n_vocab, n_embd, n_ff = 98, 64, 128
    per_layer = 2 * n_embd + 4 * n_embd * n_embd + 3 * n_ff * n_embd
    return 2 * n_vocab * n_embd + n_embd + n_layer * per_layer


_ST_WIDTH = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "I64": 8}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]],
                      metadata: dict[str, str] | None = None) -> Path:
    """safetensors by hand: 8-byte little-endian header length, JSON header, raw bytes (zeros)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = _ST_WIDTH[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.write(b"\x00" * offset)
    return path


def write_ct2(folder: Path, *, spec: str = "WhisperSpec", layers: int = 2) -> Path:
    """A CTranslate2 model.bin in its binary layout (version 6) plus config.json."""
    folder.mkdir(parents=True, exist_ok=True)

    def string(s: str) -> bytes:
        b = s.encode() + b"\x00"
        return struct.pack("<H", len(b)) + b

    variables: list[tuple[str, list[int], int, bytes]] = [("decoder/activation", [], 1, b"\x03")]
    for part in ("encoder", "decoder"):
        for i in range(layers):
            variables.append((f"{part}/layer_{i}/ffn/linear_0/weight", [8, 4], 4, b"\x00" * 64))
        variables.append((f"{part}/layer_norm/gamma", [4], 4, b"\x00" * 8))
    out = struct.pack("<I", 6) + string(spec) + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    for name, shape, dtype, data in variables:
        out += string(name) + struct.pack("<B", len(shape)) + b"".join(struct.pack("<I", d) for d in shape)
        out += struct.pack("<B", dtype) + struct.pack("<I", len(data)) + data
    out += struct.pack("<I", 0)  # aliases
    (folder / "model.bin").write_bytes(out)
    (folder / "config.json").write_text(json.dumps({"alignment_heads": [[1, 0]], "lang_ids": [1, 2],
                                                    "suppress_ids": [], "suppress_ids_begin": []}))
    return folder


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _field(num: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(num << 3) + _varint(payload)
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def onnx_bytes(*, ir_version: int = 8, producer: str = "aima-tests", opset: int = 17) -> bytes:
    """A small ONNX ModelProto: one MatMul node and one float32 4x3 initializer."""
    init = _field(1, 4) + _field(1, 3) + _field(2, 1) + _field(8, b"W") + _field(9, b"\x00" * 48)
    node = _field(1, b"X") + _field(1, b"W") + _field(2, b"Y") + _field(4, b"MatMul")
    graph = _field(1, node) + _field(2, b"g") + _field(5, init)
    return (_field(1, ir_version) + _field(2, producer.encode()) + _field(3, b"1.0") + _field(7, graph)
            + _field(8, _field(1, b"") + _field(2, opset)))


# ---------------------------------------------------------------------------- HTTP servers
class Server:
    """A ThreadingHTTPServer on 127.0.0.1 with a handler function; records every request."""

    def __init__(self, handle: Any):
        self.requests: list[dict[str, Any]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a: Any) -> None:
                pass

            def _any(self) -> None:
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": {k.lower(): v for k, v in self.headers.items()}})
                try:
                    handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_HEAD = do_POST = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, path_part: str = "") -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "GET" and path_part in r["path"]]


def send(h: BaseHTTPRequestHandler, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
         *, length: bool = True, cut_at: int | None = None) -> None:
    """Answer; ``cut_at`` sends only that many body bytes, then drops the connection."""
    h.send_response(code)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if length:
        h.send_header("Content-Length", str(len(body)))
    h.send_header("Connection", "close")
    h.end_headers()
    h.close_connection = True
    if h.command == "HEAD":
        return
    if cut_at is not None:
        h.wfile.write(body[:cut_at])
        h.wfile.flush()
        h.connection.shutdown(2)
        return
    h.wfile.write(body)


def serve_range(h: BaseHTTPRequestHandler, data: bytes, headers: dict[str, str] | None = None, *,
                ignore_range: bool = False, cut_at: int | None = None, length: bool = True) -> None:
    """Serve ``data`` honouring ``Range: bytes=N-`` (unless told to ignore it)."""
    rng = h.headers.get("Range")
    extra = {"Accept-Ranges": "bytes", **(headers or {})}
    if rng and not ignore_range and rng.startswith("bytes="):
        start_s, _, end_s = rng[6:].partition("-")
        start = int(start_s)
        end = int(end_s) if end_s else len(data) - 1
        if start >= len(data):
            send(h, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
            return
        part = data[start:end + 1]
        send(h, 206, part, {**extra, "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}"},
             cut_at=cut_at)
        return
    send(h, 200, data, extra, length=length, cut_at=cut_at)


class FileServer(Server):
    """Plain files by path; per-path behaviour: cut the first full GET, ignore Range, hide the length."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_first: dict[str, int] = {}  # path -> bytes sent before dropping the first GET
        self.cut_always: dict[str, int] = {}
        self.ignore_range: set[str] = set()
        self.no_length: set[str] = set()
        super().__init__(self._handle)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = urllib.parse.urlsplit(h.path).path
        data = self.files.get(path)
        if data is None:
            send(h, 404, b"not found")
            return
        if path in self.no_length:
            if h.command == "HEAD":
                send(h, 200, b"", {"Content-Type": "application/octet-stream"}, length=False)
                return
            h.protocol_version = "HTTP/1.0"  # body ends when the connection closes
            send(h, 200, data, {"Content-Type": "application/octet-stream"}, length=False)
            return
        cut = None
        if h.command == "GET" and path in self.cut_first:
            cut = self.cut_first.pop(path)
        elif h.command == "GET" and path in self.cut_always:
            cut = self.cut_always[path]
        serve_range(h, data, ignore_range=path in self.ignore_range, cut_at=cut)


class HfMirror(Server):
    """The Hugging Face hub endpoints huggingface_hub uses for model_info, list_repo_tree and
    hf_hub_download / snapshot_download: /api/models/{repo}/revision/{rev},
    /api/models/{repo}/tree/{rev}[/{path}], HEAD/GET /{repo}/resolve/{rev}/{file} (ETag,
    X-Repo-Commit, Content-Length, Range)."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.cut_first: dict[str, int] = {}  # file path -> bytes sent before dropping the first GET
        self.lie_sha: set[str] = set()  # list a wrong LFS sha256 for these files
        self.extra_tree: list[dict[str, Any]] = []  # raw entries added to every tree listing
        super().__init__(self._handle)

    def add(self, repo: str, files: dict[str, bytes]) -> str:
        commit = hashlib.sha1((repo + "|".join(sorted(files))).encode()).hexdigest()
        self.repos[repo] = {"commit": commit, "files": files}
        return commit

    def _repo(self, org: str, name: str) -> dict[str, Any] | None:
        return self.repos.get(f"{org}/{name}")

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        u = urllib.parse.urlsplit(h.path)
        parts = [urllib.parse.unquote(p) for p in u.path.split("/") if p]
        not_found = {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"}
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo = self._repo(parts[2], parts[3])
            if repo is None:
                send(h, 404, b'{"error":"Repository not found"}', not_found)
                return
            rev = parts[5]
            if rev not in ("main", repo["commit"]):
                send(h, 404, b'{"error":"Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
                return
            if parts[4] == "revision":
                body = {"id": f"{parts[2]}/{parts[3]}", "modelId": f"{parts[2]}/{parts[3]}", "sha": repo["commit"],
                        "private": False, "siblings": [{"rfilename": p} for p in repo["files"]]}
                send(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})
                return
            prefix = "/".join(parts[6:])
            entries = []
            for p, data in sorted(repo["files"].items()):
                if prefix and not p.startswith(prefix + "/"):
                    continue
                sha = sha256_bytes(data) if p not in self.lie_sha else "0" * 64
                entries.append({"type": "file", "path": p, "size": len(data),
                                "oid": hashlib.sha1(data).hexdigest(),
                                "lfs": {"oid": sha, "size": len(data), "pointerSize": 134}})
            entries += self.extra_tree
            send(h, 200, json.dumps(entries).encode(), {"Content-Type": "application/json"})
            return
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo(parts[0], parts[1])
            if repo is None:
                send(h, 404, b"Repository not found", not_found)
                return
            path = "/".join(parts[4:])
            data = repo["files"].get(path)
            if data is None:
                send(h, 404, b"Entry not found", {"X-Error-Code": "EntryNotFound"})
                return
            headers = {"ETag": f'"{sha256_bytes(data)}"', "X-Repo-Commit": repo["commit"],
                       "Content-Type": "application/octet-stream"}
            cut = self.cut_first.pop(path, None) if h.command == "GET" and not h.headers.get("Range") else None
            serve_range(h, data, headers, cut_at=cut)
            return
        send(h, 404, b"{}", {"Content-Type": "application/json"})


class MsMirror(Server):
    """The ModelScope endpoints the modelscope library uses for snapshot_download:
    GET /api/v1/models/{repo}/repo/files (listing with Size and Sha256) and
    GET /api/v1/models/{repo}/repo?Revision=&FilePath= (the bytes, with Range)."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.lie_sha: set[str] = set()
        super().__init__(self._handle)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        u = urllib.parse.urlsplit(h.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        parts = [p for p in u.path.split("/") if p]
        if parts[:3] == ["api", "v1", "models"] and len(parts) >= 6:
            files = self.repos.get(f"{parts[3]}/{parts[4]}")
            if files is None:
                send(h, 404, json.dumps({"Code": 10010205001, "Message": "model not found",
                                         "Success": False}).encode(), {"Content-Type": "application/json"})
                return
            if parts[5:] == ["repo", "files"]:
                listing = [{"Name": p.rsplit("/", 1)[-1], "Path": p, "Type": "blob", "Size": len(d),
                            "Sha256": sha256_bytes(d) if p not in self.lie_sha else "0" * 64, "Revision": "c0ffee"}
                           for p, d in sorted(files.items())]
                body = {"Code": 200, "Data": {"Files": listing}, "Success": True}
                send(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})
                return
            if parts[5:] == ["repo"] and "FilePath" in q:
                data = files.get(q["FilePath"])
                if data is None:
                    send(h, 404, b'{"Code":404,"Success":false}', {"Content-Type": "application/json"})
                    return
                serve_range(h, data, {"Content-Type": "application/octet-stream"})
                return
        send(h, 404, json.dumps({"Code": 404, "Message": "not found", "Success": False}).encode(),
             {"Content-Type": "application/json"})
