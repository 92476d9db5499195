"""The ``aima`` command. Operation commands are generated from ``manifest.json``; the few commands
that are not operations (the daemon's start/stop, ``up``/``down``, ``mcp``) live here too and still
hold no logic of their own beyond process handling."""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any  # noqa: UP035 - Typer reads these annotations at runtime

import typer

DEFAULT_URL = "http://127.0.0.1:9090"
MANIFEST = Path(__file__).with_name("manifest.json")


class Opts:
    url: str = os.environ.get("AIMA_URL", DEFAULT_URL)
    api_key: str | None = os.environ.get("AIMA_API_KEY")
    output: str = "table"


app = typer.Typer(help="aima: run AI models as services on the machines you have, behind one "
                       "OpenAI-compatible endpoint.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode=None)
_groups: dict[str, typer.Typer] = {}


URL_HELP = "daemon URL (env AIMA_URL)"
KEY_HELP = "API key (env AIMA_API_KEY)"
OUTPUT_HELP = "output format: table or json"


@app.callback()
def _global(
    url: str = typer.Option(Opts.url, "--url", envvar="AIMA_URL", help=URL_HELP),
    api_key: str | None = typer.Option(None, "--api-key", envvar="AIMA_API_KEY", help=KEY_HELP),
    output: str = typer.Option("table", "--output", "-o", help=OUTPUT_HELP),
) -> None:
    _set_globals(url, api_key, output)


def _set_globals(url: str | None, api_key: str | None, output: str | None) -> None:
    """The global options, wherever they were given: before the command (the group's) or after it (each
    command's own copy, which wins)."""
    if output is not None:
        if output not in ("table", "json"):
            fail(f"-o must be table or json, not {output!r}", 2)
        Opts.output = output
    if url is not None:
        Opts.url = url
    if api_key is not None:
        Opts.api_key = api_key


# The same three options on every command, so `aima service list -o json` works as `aima -o json service
# list` does (kubectl, docker and gh accept their output flag after the command too). Their values are
# applied by ``guarded`` before the command runs; None means "not given here".
_GLOBAL_NAMES = ("global_url_", "global_api_key_", "global_output_")


def _global_params(short_o: bool = True) -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    out_decls = ["--output", "-o"] if short_o else ["--output"]
    return [
        inspect.Parameter("global_url_", kw, annotation=str | None,
                          default=typer.Option(None, "--url", help=URL_HELP, show_default=False)),
        inspect.Parameter("global_api_key_", kw, annotation=str | None,
                          default=typer.Option(None, "--api-key", help=KEY_HELP, show_default=False)),
        inspect.Parameter("global_output_", kw, annotation=str | None,
                          default=typer.Option(None, *out_decls, help=OUTPUT_HELP, show_default=False)),
    ]


def fail(message: str, code: int = 1) -> None:
    print(f"aima: {message}", file=sys.stderr)
    raise typer.Exit(code)


def guarded(fn: Callable[..., Any] | None = None, *, short_o: bool = True) -> Any:
    """Run a command; any error becomes one readable line and its exit code, never a traceback. The command
    also takes the global options (``--url``, ``--api-key``, ``-o``) after its name; ``short_o=False`` for a
    command whose own ``-o`` means something else (``speak -o FILE``)."""
    if fn is None:
        return lambda f: guarded(f, short_o=short_o)

    def run(*args: Any, **kwargs: Any) -> Any:
        from aima.errors import AimaError

        try:
            _set_globals(*(kwargs.pop(n, None) for n in _GLOBAL_NAMES))
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except AimaError as e:
            fail(e.message, e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as e:  # noqa: BLE001
            if os.environ.get("AIMA_DEBUG"):
                raise
            fail(f"unexpected error: {type(e).__name__}: {e} (set AIMA_DEBUG=1 for details)", 1)
    sig = inspect.signature(fn, eval_str=True)
    params = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    run.__signature__ = sig.replace(parameters=[*params, *_global_params(short_o)])  # type: ignore[attr-defined]
    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def client() -> Any:
    from aima.surfaces.cli.client import Client

    url = daemon_url()
    return Client(url, api_key(url))


def _home() -> Path:
    return Path(os.environ.get("AIMA_HOME") or Path.home() / ".aima").expanduser()


def _local_url() -> str | None:
    """The URL the local daemon (of AIMA_HOME) recorded in its pid file."""
    try:
        return str(json.loads((_home() / "daemon.pid").read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def daemon_url() -> str:
    """--url / AIMA_URL when given; else the URL the local daemon recorded in AIMA_HOME/daemon.pid
    (it may listen on AIMA_PORT rather than the default); else the default."""
    if Opts.url != DEFAULT_URL or os.environ.get("AIMA_URL"):
        return Opts.url
    return _local_url() or Opts.url


def api_key(url: str) -> str | None:
    """--api-key / AIMA_API_KEY when given; else, for the local daemon only (the URL its pid file records),
    the key it keeps for this machine's CLI in AIMA_HOME/local.key (server.auth): creating the first key
    never locks out the person at this machine. Never sent to another URL."""
    if Opts.api_key:
        return Opts.api_key
    if url.rstrip("/") != (_local_url() or "").rstrip("/"):
        return None
    try:
        return (_home() / "local.key").read_text().strip() or None
    except OSError:
        return None


def call(op: str, data: dict[str, Any]) -> Any:
    c = client()
    try:
        return c.call(op, data)
    finally:
        c.close()


def group(name: str | None) -> typer.Typer:
    if name is None:
        return app
    if name not in _groups:
        _groups[name] = typer.Typer(help=f"{name} commands", no_args_is_help=True)
        app.add_typer(_groups[name], name=name)
    return _groups[name]


# ----------------------------------------------------------------------------- generated commands
_PY = {"string": str, "integer": int, "number": float, "boolean": bool}


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        if "=" not in v:
            fail(f"--{option} expects key=value, got {v!r}", 2)
        k, _, val = v.partition("=")
        out[k.strip()] = val
    return out


def _build(cmd: dict[str, Any], extra: Callable[[dict[str, Any], Any], None] | None = None,
           extra_params: list[inspect.Parameter] | None = None) -> Callable[..., Any]:
    params: list[inspect.Parameter] = []
    specs = {p["name"]: p for p in cmd["params"]}
    for p in cmd["params"]:
        help_ = p["help"] + (f" [{'|'.join(map(str, p['choices']))}]" if p.get("choices") else "")
        decls = [f"--{p['cli_name']}"] + ([p["short"]] if p.get("short") else [])
        if p["positional"]:
            default: Any = typer.Argument(..., help=help_)
            ann: Any = list[str] if p["type"] == "list" else _PY.get(p["type"], str)
        elif p["type"] == "boolean":
            n = p["cli_name"]
            default = typer.Option(bool(p["default"]), f"--{n}/--no-{n}", help=help_, hidden=p["hidden"])
            ann = bool
        elif p["type"] in ("dict", "list"):
            default = typer.Option(None, *decls, help=help_ + " (repeatable" +
                                   (", key=value)" if p["type"] == "dict" else ")"), hidden=p["hidden"])
            ann = list[str] | None
        else:
            default = typer.Option(None, *decls, help=help_, hidden=p["hidden"],
                                   show_default=p["default"] is not None)
            ann = _PY.get(p["type"], str) | None
        params.append(inspect.Parameter(p["name"], inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=ann))
    params.extend(extra_params or [])

    def command(**kwargs: Any) -> None:
        data: dict[str, Any] = {}
        for name, value in kwargs.items():
            spec = specs.get(name)
            if spec is None or value is None:
                continue
            if spec["type"] == "dict":
                value = _pairs(value, spec["cli_name"])
            data[name] = value
        if extra is not None:
            extra(data, kwargs)
            return
        result = call(cmd["op"], data)
        _print(cmd, result)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = cmd["command"]
    command.__doc__ = cmd["help"]
    return guarded(command)


def _print(cmd: dict[str, Any], result: Any) -> None:
    from aima.surfaces.cli.render import show

    show(result, Opts.output, cmd.get("table"), cmd.get("columns"))
    if isinstance(result, dict) and result.get("outcome") in ("failed", "timeout"):
        raise typer.Exit(8 if result["outcome"] == "failed" else 9)


def _follow_logs(data: dict[str, Any], kwargs: dict[str, Any]) -> None:
    result = call("service.logs", data)
    if not kwargs.get("follow"):
        if Opts.output == "json":
            from aima.surfaces.cli.render import dump_json

            dump_json(result)
        else:
            print("\n".join(result["lines"]))
        return
    for line in result["lines"]:
        print(line, flush=True)
    offset = result["offset"]
    c = client()
    try:
        while True:
            time.sleep(0.5)
            r = c.call("service.logs", {**data, "offset": offset})
            for line in r["lines"]:
                print(line, flush=True)
            offset = r["offset"]
    except KeyboardInterrupt:
        pass
    finally:
        c.close()


_FOLLOW = [inspect.Parameter("follow", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                             default=typer.Option(False, "--follow", "-f", help="keep printing new lines"))]


def _with_progress(cmd: dict[str, Any]) -> Callable[[dict[str, Any], Any], None]:
    """Long transfers draw a Rich progress bar (on stderr) from the daemon's progress events."""
    def run(data: dict[str, Any], _kwargs: Any) -> None:
        from aima.surfaces.cli.progress import call_with_progress

        _print(cmd, call_with_progress(daemon_url(), api_key(daemon_url()), cmd["op"], data))
    return run


def _with_local_paths(cmd: dict[str, Any]) -> Callable[[dict[str, Any], Any], None]:
    """The daemon does not share the CLI's working folder: send local paths absolute."""
    def run(data: dict[str, Any], _kwargs: Any) -> None:
        from aima.surfaces.cli.progress import absolute_paths

        _print(cmd, call(cmd["op"], absolute_paths(cmd["op"], data)))
    return run


def _chat_answer(cmd: dict[str, Any]) -> Callable[[dict[str, Any], Any], None]:
    """`aima chat`: the answer on stdout, the figures on stderr (or the whole result with -o json)."""
    def run(data: dict[str, Any], _kwargs: Any) -> None:
        result = call(cmd["op"], data)
        if Opts.output == "json":
            _print(cmd, result)
            return
        print(result["text"])
        print(f"({result['service']}: {_figures(result)})", file=sys.stderr)
    return run


def _figures(result: dict[str, Any]) -> str:
    parts = []
    if result.get("usage"):
        parts.append(f"{result['usage'].get('completion_tokens')} tokens")
    if result.get("tokens_per_s"):
        parts.append(f"{result['tokens_per_s']:.0f} tok/s")
    if result.get("ttft_s"):
        parts.append(f"first token after {result['ttft_s']:.2f}s")
    if result.get("duration_s"):
        parts.append(f"{result['duration_s']:.1f}s of audio")
    if result.get("rtf") is not None:
        parts.append(f"RTF {result['rtf']:.3f}")
    parts.append(f"{result.get('elapsed_s', 0):.2f}s")
    return ", ".join(parts)


# Operations whose commands are written by hand below: `up`/`down` wrap the daemon's start/stop,
# `speak`/`transcribe` read and write local audio files.
HAND_WRITTEN = ("stack.up", "stack.down", "inference.speak", "inference.transcribe")


def _register_generated() -> None:
    manifest = json.loads(MANIFEST.read_text())
    for cmd in manifest["commands"]:
        if cmd["op"] in HAND_WRITTEN:
            continue
        if cmd["op"] == "inference.chat":
            fn = _build(cmd, extra=_chat_answer(cmd))
        elif cmd["op"] == "service.logs":
            fn = _build(cmd, extra=_follow_logs, extra_params=_FOLLOW)
        elif cmd["op"] in ("model.pull", "model.import"):
            fn = _build(cmd, extra=_with_progress(cmd))
        elif cmd["op"] == "model.scan":
            fn = _build(cmd, extra=_with_local_paths(cmd))
        else:
            fn = _build(cmd)
        group(cmd["group"]).command(cmd["command"], help=cmd["help"], short_help=cmd["summary"])(fn)


# ----------------------------------------------------------------------------- the daemon
def _settings() -> Any:
    from aima.config import Settings

    return Settings()


@app.command("start")
@guarded
def start_cmd(
    host: str | None = typer.Option(None, "--host", help="address to listen on (default 127.0.0.1)"),
    port: int | None = typer.Option(None, "--port", help="port to listen on (default 9090)"),
    detach: bool = typer.Option(False, "--detach", "-d", help="run in the background; return when up"),
    timeout: float = typer.Option(60.0, "--timeout", help="seconds to wait for a detached daemon"),
    insecure: bool = typer.Option(False, "--insecure", help="listen beyond loopback even without an API key"),
    ray: str | None = typer.Option(None, "--ray", metavar="ADDRESS",
                                   help="attach to the Ray cluster whose head's GCS is at ADDRESS (host:port) and run "
                                        "services on its nodes (also AIMA_RAY_ADDRESS, ray.address in config.yaml)"),
) -> None:
    """Start the aima daemon (REST, OpenAI, MCP and the web page on one port)."""
    if ray:
        os.environ["AIMA_RAY_ADDRESS"] = ray  # the daemon (this process, or the detached one) reads it
    settings = _settings()
    host = host or settings.host
    port = port or settings.port
    if not detach:
        from aima.server.daemon import serve
        from aima.surfaces import mounts

        raise typer.Exit(serve(settings, host, port, insecure, mounts()))  # serve() announces itself once listening
    info = start_detached(settings, host, port, timeout, insecure)
    print(f"aima daemon running (pid {info['pid']}) at {info['url']}")


def start_detached(settings: Any, host: str, port: int, timeout: float, insecure: bool = False) -> dict[str, Any]:
    import subprocess

    from aima.errors import Unavailable
    from aima.server.daemon import answers_health, claim_pid_file, read_pid_file

    settings.ensure_dirs()
    stale = claim_pid_file(settings.pid_file)
    if stale:
        print(f"aima: {stale}: its pid file was stale and is removed", file=sys.stderr)
    log_path = settings.logs_dir / "daemon.log"
    with open(log_path, "ab") as log:
        offset = log.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "aima.surfaces.daemon", "--host", host, "--port", str(port),
             *(["--insecure"] if insecure else [])],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            with open(log_path, "rb") as f:
                f.seek(offset)
                lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit code {code}"
            raise Unavailable(f"the daemon did not start: {why.removeprefix('aima: ')} (log: {log_path})")
        info = read_pid_file(settings.pid_file)
        if info and info["pid"] == proc.pid and answers_health(info["url"]):
            return info
        time.sleep(0.05)
    raise Unavailable(f"the daemon did not answer /health within {timeout:g}s; see {log_path}")


@app.command("stop")
@guarded
def stop_cmd(timeout: float = typer.Option(40.0, "--timeout", help="seconds to wait")) -> None:
    """Stop the aima daemon gracefully (services keep running)."""
    settings = _settings()
    if not stop_daemon(settings, timeout):
        print("aima daemon is not running")
        return
    print("aima daemon stopped")


def stop_daemon(settings: Any, timeout: float) -> bool:
    import signal

    from aima.errors import TimedOut
    from aima.server.daemon import read_pid_file

    info = read_pid_file(settings.pid_file)
    if not info:
        return False
    os.kill(int(info["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_pid_file(settings.pid_file) is None:
            return True
        time.sleep(0.05)
    raise TimedOut(f"the daemon (pid {info['pid']}) did not stop within {timeout:g}s")


# ----------------------------------------------------------------------------- up / down / mcp
def _manifest_cmd(op: str) -> dict[str, Any]:
    return next(c for c in json.loads(MANIFEST.read_text())["commands"] if c["op"] == op)


@app.command("up")
@guarded
def up_cmd(
    model: list[str] | None = typer.Option(None, "--model", "-m",
                                           help="bring up this model instead of the default stack (repeatable)"),
    check: bool = typer.Option(True, "--check/--no-check", help="prove each service live with a real request"),
    timeout: float = typer.Option(600.0, "--timeout", help="seconds to wait for each service to be ready"),
    lang: str | None = typer.Option(None, "--lang", help="the language its users speak: en, or zh for Chinese speech "
                                                         "to text (Whisper base; default: stack_lang, en)"),
) -> None:
    """The main job: start the daemon if needed, bring the default stack for this hardware up (pulling what
    is missing), prove each model live and print a table of what runs where, with its figures."""
    if lang is not None and lang not in ("en", "zh"):
        fail(f"--lang must be en or zh, not {lang!r}", 2)
    settings = _settings()
    from aima.server.daemon import read_pid_file

    live = read_pid_file(settings.pid_file)
    if Opts.url == DEFAULT_URL and live:
        Opts.url = live["url"]  # the local daemon may listen on AIMA_PORT, not the default port
    elif Opts.url == DEFAULT_URL:
        info = start_detached(settings, settings.host, settings.port, 60.0)
        Opts.url = info["url"]
        print(f"started the aima daemon (pid {info['pid']}) at {info['url']}", file=sys.stderr)
    else:
        c = client()
        try:
            c.request("GET", "/health")  # no daemon at --url: one line saying so, before any progress
        finally:
            c.close()
    from aima.surfaces.cli.up import show_result, up_with_progress

    data: dict[str, Any] = {"models": list(model or []), "check": check, "timeout_s": timeout}
    if lang is not None:
        data["lang"] = lang
    print("bringing up " + (", ".join(model) if model else "the default stack" + (f" ({lang})" if lang else "")) + "…",
          file=sys.stderr)
    result = up_with_progress(Opts.url, api_key(Opts.url), data)
    if Opts.output == "json":
        _print(_manifest_cmd("stack.up"), result)
    else:
        show_result(result)
    rows = result["services"]
    bad = [f"{s['model']}: {s['outcome']}" for s in rows if s["outcome"] != "ready"]
    bad += [f"{s['model']}: check failed" for s in rows if s["outcome"] == "ready" and s["check"] == "failed"]
    if bad:
        fail("; ".join(bad) + " (`aima service list` and `aima service logs SERVICE` say more)", 8)
    if Opts.output != "json":
        hint = next((f'aima chat {s["model"]} "hello"' for s in rows if s.get("type") == "llm"), "aima service list")
        print(f"\nall ready{' and checked' if check else ''} in {result['elapsed_s']:.1f}s. Try: {hint}   "
              f"(daemon at {Opts.url}; `aima down` stops it all)")


@app.command("down")
@guarded
def down_cmd() -> None:
    """Stop the default stack and the daemon."""
    settings = _settings()
    from aima.server.daemon import read_pid_file

    live = read_pid_file(settings.pid_file)
    if live and Opts.url == DEFAULT_URL:
        Opts.url = live["url"]  # the local daemon that `aima up` started, wherever it listens
    if live or Opts.url != DEFAULT_URL:
        result = call("stack.down", {})
        _print(_manifest_cmd("stack.down"), result)
    stop_daemon(settings, 40.0)
    print("aima is down", file=sys.stderr)  # stdout stays the result (parseable with -o json)


@app.command("run")
@guarded
def run_cmd(
    model: str = typer.Argument(..., help="catalog model name or alias"),
    engine: str | None = typer.Option(None, "--engine", help="catalog engine (default: best for this hardware)"),
    config: list[str] | None = typer.Option(None, "--config", help="engine config key=value (repeatable)"),
    name: str | None = typer.Option(None, "--name", help="service name (default: the model name)"),
    timeout: float | None = typer.Option(None, "--timeout", help="seconds to wait for ready"),
    runtime: str | None = typer.Option(None, "--runtime",
                                       help="native, docker, ray or auto (default: the engine's preference and "
                                            "what is available; a model too big for this machine runs on a node "
                                            "of an attached cluster)"),
    detach: bool = typer.Option(False, "--detach", "-d", help="just serve: print the endpoint and return"),
) -> None:
    """Resolve, pull, create, start and wait for MODEL, then chat with it (or --detach to just serve)."""
    from aima.surfaces.cli.progress import call_with_progress

    data: dict[str, Any] = {"model": model, "config": _pairs(config, "config")}
    for k, v in (("engine", engine), ("name", name), ("timeout_s", timeout), ("runtime", runtime)):
        if v is not None:
            data[k] = v
    result = call_with_progress(daemon_url(), api_key(daemon_url()), "service.run", data)
    svc = result["service"]
    if Opts.output == "json" or detach or result["outcome"] != "ready":
        _print({"table": None, "columns": []}, result)
        return
    from aima.surfaces.cli.chat import interactive

    interactive(svc)


@app.command("speak")
@guarded(short_o=False)
def speak_cmd(
    model: str = typer.Argument(..., help="voice model name or alias, or a service name"),
    text: str = typer.Argument(..., help="what to say"),
    out: str = typer.Option("speech.wav", "--out", "-o",
                            help="the audio file to write (- for stdout); `-o json` or `-o table` chooses the "
                                 "output format, as for every command (the audio then goes to speech.wav)"),
    fmt: str | None = typer.Option(None, "--format", help="wav or pcm (default: from the file name, else wav)"),
    voice: str | None = typer.Option(None, "--voice", help="speaker of a multi-speaker voice"),
    speed: float | None = typer.Option(None, "--speed", help="speaking speed (1 is normal)"),
) -> None:
    """Say TEXT with a ready text-to-speech service and write the audio to a file."""
    if out in ("json", "table"):
        Opts.output, out = out, "speech.wav"
    fmt = fmt or ("pcm" if out.lower().endswith((".pcm", ".raw")) else "wav")
    data: dict[str, Any] = {"model": model, "text": text, "format": fmt}
    for k, v in (("voice", voice), ("speed", speed)):
        if v is not None:
            data[k] = v
    result = call("inference.speak", data)
    import base64

    audio = base64.b64decode(result.pop("audio_b64"))
    if out == "-":
        sys.stdout.buffer.write(audio)
        sys.stdout.flush()
    else:
        try:
            Path(out).expanduser().write_bytes(audio)
        except OSError as e:
            fail(f"cannot write {out}: {e.strerror or e}", 1)
    result["path"] = out
    if Opts.output == "json" and out != "-":
        _print({"table": None}, result)
    elif out != "-":
        print(f"wrote {out}: {len(audio)} bytes, {result['sample_rate']} Hz ({result['service']}: {_figures(result)})")


@app.command("transcribe")
@guarded
def transcribe_cmd(
    model: str = typer.Argument(..., help="speech model name or alias, or a service name"),
    file: str = typer.Argument(..., help="the audio file (wav, mp3, flac...; - for stdin)"),
    language: str | None = typer.Option(None, "--language", help="language code (default: detect it)"),
) -> None:
    """Turn the speech in an audio file into text with a ready speech-recognition service."""
    import base64

    try:
        audio = sys.stdin.buffer.read() if file == "-" else Path(file).expanduser().read_bytes()
    except OSError as e:
        fail(f"cannot read {file}: {e.strerror or e}", 2)
    data: dict[str, Any] = {"model": model, "audio": base64.b64encode(audio).decode(),
                            "filename": "stdin.wav" if file == "-" else Path(file).name}
    if language:
        data["language"] = language
    result = call("inference.transcribe", data)
    if Opts.output == "json":
        _print({"table": None}, result)
        return
    print(result["text"])
    print(f"({result['service']}: {_figures(result)})", file=sys.stderr)


@app.command("voice")
@guarded(short_o=False)
def voice_cmd(
    file: str = typer.Argument(..., help="the spoken question (wav, mp3, flac...; - for stdin)"),
    out: str = typer.Option("reply.wav", "--out", "-o",
                            help="the WAV file for the reply's speech; `-o json` or `-o table` chooses the output "
                                 "format, as for every command (the audio then goes to reply.wav)"),
    model: str | None = typer.Option(None, "--model", help="the chat model (default: the ready LLM)"),
    transcription_model: str | None = typer.Option(None, "--transcription-model",
                                                   help="the speech-recognition model (default: the ready one)"),
    speech_model: str | None = typer.Option(None, "--speech-model", help="the voice model (default: the ready one)"),
    voice: str | None = typer.Option(None, "--voice", help="speaker of a multi-speaker voice"),
    system: str | None = typer.Option(None, "--system", help="the system prompt (default: a short spoken-answer one)"),
    session: str | None = typer.Option(None, "--session", help="continue this conversation (a new one when unknown)"),
    language: str | None = typer.Option(None, "--language", help="language of the question (default: detect it)"),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="at most this many tokens in the reply"),
    temperature: float | None = typer.Option(None, "--temperature", help="sampling temperature"),
) -> None:
    """One spoken turn: FILE is transcribed, answered by the chat model and the answer spoken (POST /v1/voice);
    the reply's text is printed as it is written and its speech written to a WAV file."""
    if out in ("json", "table"):
        Opts.output, out = out, "reply.wav"
    from aima.surfaces.cli.voice import voice as run_voice

    fields = {k: str(v) for k, v in (("model", model), ("transcription_model", transcription_model),
                                     ("speech_model", speech_model), ("voice", voice), ("system", system),
                                     ("session", session), ("language", language), ("max_tokens", max_tokens),
                                     ("temperature", temperature)) if v is not None}
    raise typer.Exit(run_voice(daemon_url(), api_key(daemon_url()), file, fields, out, Opts.output))


@app.command("mcp")
@guarded
def mcp_cmd(
    profile: str | None = typer.Option(None, "--profile",
                                       help="offer only what this profile allows, compactly: read-only, operator or "
                                            "admin (default: every operation, full schemas)"),
    yes: bool = typer.Option(False, "--yes", help="approve destructive calls (otherwise the client is asked, when it "
                                                  "can be, else they are denied)"),
) -> None:
    """Serve MCP on stdio for an AI agent (tools call the running daemon)."""
    import anyio

    from aima.surfaces.mcp import serve_stdio

    if profile is not None and profile not in ("read-only", "operator", "admin"):
        fail(f"--profile must be read-only, operator or admin, not {profile!r}", 2)
    anyio.run(serve_stdio, daemon_url(), api_key(daemon_url()), profile, yes)


@app.command("ask")
@guarded
def ask_cmd(
    prompt: str = typer.Argument(..., help="what you want done or known, in words"),
    session: str | None = typer.Option(None, "--session", help="continue this conversation (a new one when unknown)"),
    profile: str = typer.Option("operator", "--profile",
                                help="what the agent may do: read-only, operator (create/start/stop) or admin"),
    yes: bool = typer.Option(False, "--yes", "-y", help="approve destructive calls (delete, rm, keys, stack down, "
                                                        "stopping a pinned service) without asking"),
    max_rounds: int | None = typer.Option(None, "--max-rounds", min=1, max=200,
                                          help="most model answers before giving up (default 30)"),
) -> None:
    """Ask aima's operator agent to do something in words: it looks, acts through aima's operations (showing
    each step), verifies and answers. Destructive calls ask y/N on a terminal and are denied without one."""
    from aima.surfaces.cli.ask import ask

    body: dict[str, Any] = {"prompt": prompt, "profile": profile, "yes": yes}
    if session is not None:
        body["session"] = session
    if max_rounds is not None:
        body["max_rounds"] = max_rounds
    raise typer.Exit(ask(daemon_url(), api_key(daemon_url()), body, Opts.output))


_register_generated()


def _register_bench() -> None:
    from aima.surfaces.cli.bench import register

    register(app, sys.modules[__name__])


_register_bench()


def main() -> None:
    """Run the CLI; a usage error (bad option value, unknown command) is one line on stderr."""
    try:
        code = app(standalone_mode=False)
    except Exception as e:  # click's own errors (plain click, or vendored as typer._click by Typer >= 0.28)
        if type(e).__name__ == "Abort":
            print("aima: aborted", file=sys.stderr)
            sys.exit(1)
        exit_code = getattr(e, "exit_code", None)
        if not (hasattr(e, "format_message") and isinstance(exit_code, int)):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()  # type: ignore[attr-defined]  # no arguments: the help text, as before
            sys.exit(exit_code)
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"aima: {' '.join(e.format_message().split())}{hint}", file=sys.stderr)
        sys.exit(exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
