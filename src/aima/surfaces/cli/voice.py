"""``aima voice FILE``: one spoken turn through the daemon's ``POST /v1/voice`` (streamed): what was heard and the
reply as it is written go to stderr/stdout, the reply's speech (the sentences joined) to a WAV file, the time of
each stage to stderr. The standard library only (http.client), like the rest of the CLI."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import sys
import uuid
import wave
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aima.errors import AimaError, DaemonUnreachable


def multipart(fields: dict[str, str], filename: str, audio: bytes) -> tuple[bytes, str]:
    boundary = "aima-" + uuid.uuid4().hex
    out = io.BytesIO()
    for k, v in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n".encode())
    out.write(audio)
    out.write(f"\r\n--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def join(clips: list[bytes]) -> bytes:
    frames, params = [], None
    for c in clips:
        with wave.open(io.BytesIO(c), "rb") as w:
            p = (w.getframerate(), w.getnchannels(), w.getsampwidth())
            params = params or p
            if p == params:
                frames.append(w.readframes(w.getnframes()))
    buf = io.BytesIO()
    if params is not None:
        with wave.open(buf, "wb") as w:
            w.setframerate(params[0])
            w.setnchannels(params[1])
            w.setsampwidth(params[2])
            w.writeframes(b"".join(frames))
    return buf.getvalue()


def events(resp: http.client.HTTPResponse) -> Any:
    """The server-sent events of a streamed answer, as dicts."""
    data: list[str] = []
    for raw in resp:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []


def voice(url: str, api_key: str | None, path: str, fields: dict[str, str], out: str, output: str) -> int:
    try:
        audio = sys.stdin.buffer.read() if path == "-" else Path(path).expanduser().read_bytes()
    except OSError as e:
        raise AimaError(f"cannot read {path}: {e.strerror or e}", field="file") from None
    body, ctype = multipart({**fields, "stream": "true"}, "stdin.wav" if path == "-" else Path(path).name, audio)
    parts = urlsplit(url.rstrip("/"))
    klass = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = klass(parts.hostname or "127.0.0.1", parts.port, timeout=900)
    headers = {"Content-Type": ctype, "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        conn.request("POST", parts.path.rstrip("/") + "/v1/voice", body=body, headers=headers)
        resp = conn.getresponse()
    except (ConnectionRefusedError, socket.gaierror, FileNotFoundError):
        raise DaemonUnreachable(f"no aima daemon at {url}; start one with `aima start --detach` (or set --url / "
                                f"AIMA_URL)") from None
    try:
        if resp.status >= 400:
            raw = resp.read()
            try:
                payload: Any = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            raise AimaError.from_dict(resp.status, payload)
        clips: list[bytes] = []
        done: dict[str, Any] | None = None
        talk = output != "json"
        for ev in events(resp):
            kind = ev.get("type")
            if kind == "transcript" and talk:
                print(f"heard: {ev['text']}", file=sys.stderr, flush=True)
            elif kind == "reply.delta" and talk:
                sys.stdout.write(ev["text"])
                sys.stdout.flush()
            elif kind == "audio":
                clips.append(base64.b64decode(ev["audio"]))
            elif kind == "done":
                done = ev
            elif "error" in ev:
                raise AimaError.from_dict(502, ev)
    finally:
        conn.close()
    if done is None:
        raise AimaError("the daemon ended the voice answer before it was done; `aima service list` shows the "
                        "services it used")
    wav = join(clips) if clips else b""
    if wav:
        try:
            Path(out).expanduser().write_bytes(wav)
        except OSError as e:
            raise AimaError(f"cannot write {out}: {e.strerror or e}", field="out") from None
    done.pop("type", None)
    done["path"] = out if wav else None
    if not talk:
        print(json.dumps(done, ensure_ascii=False, indent=2))
        return 0
    t = done["timings"]
    print()
    figures = [f"heard in {t['transcription_s']:.2f}s"]
    if t.get("chat_first_token_s") is not None:
        figures.append(f"first token after {t['chat_first_token_s']:.2f}s")
    if t.get("first_audio_s") is not None:
        figures.append(f"first audio after {t['first_audio_s']:.2f}s")
    figures.append(f"all in {t['total_s']:.2f}s")
    where = f"wrote {out} ({done['sentences']} sentences)" if wav else "no speech in the reply"
    print(f"({where}; {', '.join(figures)}; session {done['session']})", file=sys.stderr)
    return 0
