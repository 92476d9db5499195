"""The web page in a real browser (Chromium driven by Playwright) against a real daemon with real engine processes
(aima's echo engine: the page is the point here, not the model; tests/surfaces/ui/test_ui_speech.py uses Piper
and Whisper). Every test ends with no console error and no failed request, and leaves screenshots in
``.artifacts/ui`` (tests/support/browser.py)."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import Watch, launch, need_browser, shot
from tests.support.daemon import Daemon, echo_cmd
from tests.support.echo_catalog import write_echo_catalog

PAGES = {  # hash route -> what shows once the page has its data
    "": "#services table",
    "services/chat": "#log:not(:empty)",
    "models": "#catalog table",
    "playground/chat": "#prompt",
    "playground/embed": "#text-a",
    "playground/speak": "#speak-text",
    "playground/transcribe": "#audio-file",
    "metrics": "#metrics table, #no-requests",
    "keys": "#keys p, #keys table",
    "agent": "#ask",
}
TICKER = (f"sh -c 'while :; do echo tick; sleep 0.3; done & exec {shlex.quote(sys.executable)} -m aima.engines.echo "
          f"--port {{port}} --model {{model}}'")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    need_browser()
    root = tmp_path_factory.mktemp("ui")
    write_echo_catalog(root / "home", root / "weights" / "echo.gguf")
    d = Daemon(root / "home", {})
    # the operator agent's model: the echo engine, through this daemon's own /v1 (it answers, never calls a tool)
    d.env.update(AIMA_AGENT_BASE_URL=f"{d.url}/v1", AIMA_AGENT_MODEL="chat-echo")
    d.start()
    try:
        d.create("chat-echo", name="chat", command=echo_cmd("--stream-delay", "0.08"))
        d.op("service.start", service="chat")
        d.create("smollm2-135m-instruct-q4", name="a-rather-long-service-name-that-is-never-cut")
        yield d
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def browser(stack: Daemon) -> Iterator[Any]:
    with launch() as b:
        yield b


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[tuple[Any, Watch]]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    p = ctx.new_page()
    watch = Watch().attach(p)
    try:
        yield p, watch
    finally:
        ctx.close()


def open_page(p: Any, d: Daemon, route: str, ready: str) -> None:
    p.goto(f"{d.url}/ui/#/{route}")
    p.wait_for_selector(ready, timeout=15000)


def state_of(p: Any, service: str) -> str | None:
    return p.get_attribute(f'#services tr[data-service="{service}"]', "data-state")


# ---------------------------------------------------------------------------- every page
@pytest.mark.parametrize("width,scheme", [(1400, "light"), (1400, "dark"), (390, "light"), (390, "dark")])
def test_every_page_renders_without_an_error(stack: Daemon, browser: Any, width: int, scheme: str) -> None:
    ctx = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    p = ctx.new_page()
    watch = Watch().attach(p)
    try:
        for route, ready in PAGES.items():
            open_page(p, stack, route, ready)
            p.wait_for_timeout(300)  # the live event stream connects, late answers land
            assert p.locator("h1").first.is_visible()
            overflow = p.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, f"{route or 'dashboard'} is wider than {width} px by {overflow} px"
            shot(p, f"{(route or 'dashboard').replace('/', '-')}-{width}-{scheme}")
        watch.assert_clean()
    finally:
        ctx.close()


def test_a_long_name_is_shown_whole(stack: Daemon, page: tuple[Any, Watch]) -> None:
    p, watch = page
    for width in (1400, 390):
        p.set_viewport_size({"width": width, "height": 900})
        open_page(p, stack, "", "#services table")
        link = p.locator('a.name:has-text("a-rather-long-service-name-that-is-never-cut")')
        assert link.inner_text() == "a-rather-long-service-name-that-is-never-cut"
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    watch.assert_clean()


# ---------------------------------------------------------------------------- dashboard follows the CLI
def test_the_dashboard_follows_a_state_change_made_from_the_cli(stack: Daemon, page: tuple[Any, Watch]) -> None:
    p, watch = page
    stack.create("follow-echo", name="follow")
    open_page(p, stack, "", '#services tr[data-service="follow"]')
    p.wait_for_selector("#live.on")
    assert state_of(p, "follow") == "created"
    p.evaluate("window.__notReloaded = true")
    for args, want in ((("service", "start", "follow"), "running"), (("service", "stop", "follow"), "stopped")):
        r = stack.cli(*args)
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        p.wait_for_selector(f'#services tr[data-service="follow"][data-state="{want}"]', timeout=5000)
        took = time.monotonic() - t0
        print(f"`aima {' '.join(args)}` shown on the dashboard {took * 1000:.0f} ms after the CLI returned")
        assert took < 1.0
    assert p.evaluate("window.__notReloaded") is True  # no reload: the event stream did it
    assert "service.stopped" in p.inner_text("#activity")
    shot(p, "dashboard-followed")
    watch.assert_clean()


def test_start_stop_and_delete_from_the_dashboard_with_a_confirmation(stack: Daemon, page: tuple[Any, Watch]) -> None:
    p, watch = page
    stack.create("doomed-echo", name="doomed")
    open_page(p, stack, "", '#services tr[data-service="doomed"]')
    row = '#services tr[data-service="doomed"]'
    p.click(f'{row} button[data-action="start"]')
    p.wait_for_selector(f'{row}[data-state="running"]', timeout=15000)
    assert stack.get("doomed")["state"] == "running"
    p.click(f'{row} button[data-action="delete"]')
    dialog = p.locator("dialog[open]")
    assert "Delete service doomed?" in dialog.inner_text()
    dialog.locator("button", has_text="Cancel").click()
    assert stack.get("doomed")["state"] == "running"  # cancelled: nothing happened
    p.click(f'{row} button[data-action="delete"]')
    p.locator("dialog[open] button", has_text="Delete doomed").click()
    p.wait_for_selector(row, state="detached", timeout=15000)
    assert "doomed" not in [s["name"] for s in stack.op("service.list")["services"]]
    watch.assert_clean()


def test_keyboard_alone_reaches_a_page_and_a_confirmation(stack: Daemon, page: tuple[Any, Watch]) -> None:
    p, watch = page
    open_page(p, stack, "", "#services table")

    def tab_to(selector: str, limit: int = 60) -> None:
        for _ in range(limit):
            p.keyboard.press("Tab")
            if p.evaluate("(s) => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to('nav a[data-page="models"]')
    p.keyboard.press("Enter")
    p.wait_for_selector("#catalog table")
    assert p.url.endswith("#/models")
    p.goto(f"{stack.url}/ui/#/")
    p.wait_for_selector('#services tr[data-service="chat"]')
    tab_to('#services tr[data-service="chat"] button[data-action="delete"]')
    p.keyboard.press("Enter")
    p.wait_for_selector("dialog[open]")
    assert p.evaluate("document.activeElement.textContent") == "Cancel"  # the safe answer has the focus
    p.keyboard.press("Escape")
    p.wait_for_selector("dialog", state="detached")
    assert stack.get("chat")["state"] == "running"
    watch.assert_clean()


# ---------------------------------------------------------------------------- service page
def test_the_service_page_follows_its_log(stack: Daemon, page: tuple[Any, Watch]) -> None:
    p, watch = page
    stack.create("ticker-echo", name="ticker", command=TICKER)
    stack.op("service.start", service="ticker")
    open_page(p, stack, "services/ticker", "#log:not(:empty)")
    before = p.inner_text("#log").count("tick")
    p.wait_for_function("(n) => document.querySelector('#log').textContent.split('tick').length - 1 >= n",
                        arg=before + 4, timeout=10000)
    assert "ticker" in p.inner_text("h1")
    assert "instance.running" in p.inner_text("#service-events")
    assert p.locator("#instances, section:has(#inst-title) table").count() >= 1
    shot(p, "service-log-following")
    stack.op("service.stop", service="ticker")
    p.wait_for_selector('h1 [data-state="stopped"]', timeout=10000)
    watch.assert_clean()


def test_the_service_page_shows_the_plan_with_where_each_value_came_from(stack: Daemon,
                                                                           page: tuple[Any, Watch]) -> None:
    p, watch = page
    stack.op("service.create", model="echo-model", name="planned")
    open_page(p, stack, "services/planned", "section:has(#plan-title) table")
    plan = p.inner_text("section:has(#plan-title)")
    assert "echo-model (llm) → variant cpu on echo-engine" in plan
    assert "ready_after" in plan and "model-variant" in plan  # the value and where it came from
    assert p.locator("section:has(#def-title) [data-field='command']").inner_text().count("echo") >= 1
    watch.assert_clean()


# ---------------------------------------------------------------------------- models
def test_create_and_start_from_a_catalog_model(stack: Daemon, page: tuple[Any, Watch]) -> None:
    p, watch = page
    open_page(p, stack, "models", '#catalog tr[data-model="echo-model"]')
    row = '#catalog tr[data-model="echo-model"]'
    assert p.get_attribute(row, "data-fits") == "true"
    assert "on disk" in p.inner_text(row)
    assert p.locator('#catalog tr[data-fits="false"]').count() >= 1  # the big models do not fit here, with why
    p.click(f'{row} button[data-action="create"]')
    p.fill("#svc-name", "from-catalog")
    p.locator("dialog[open] button[type=submit]").click()
    p.wait_for_url("**/#/services/from-catalog", timeout=30000)
    p.wait_for_selector('h1 [data-state="running"]', timeout=15000)
    svc = stack.get("from-catalog")
    assert svc["state"] == "running" and svc["ready"] and svc["engine"] == "echo-engine"
    shot(p, "created-from-catalog")
    watch.assert_clean()


def test_a_pull_shows_its_progress_and_the_model_lands_on_disk(stack: Daemon, page: tuple[Any, Watch],
                                                               tmp_path: Path) -> None:
    from tests.support.modelstore import write_gguf

    p, watch = page
    weights = write_gguf(tmp_path / "pulled-tiny.gguf")
    open_page(p, stack, "models", "#catalog table")
    p.fill("#pull-spec", f"file:{weights}")
    p.click("form[aria-label='Pull a model'] button[type=submit]")
    box = f'#pulls [data-pull="file:{weights}"]'
    p.wait_for_selector(f'{box} [data-state="pulled"]', timeout=30000)
    assert p.evaluate("(s) => document.querySelector(s + ' progress').value", box) == 1
    p.wait_for_selector('#local-models tr[data-local-model="pulled-tiny"]', timeout=10000)
    assert "gguf" in p.inner_text('#local-models tr[data-local-model="pulled-tiny"]')
    shot(p, "model-pulled")
    watch.assert_clean()


# ---------------------------------------------------------------------------- playground
def test_a_chat_streams_into_the_page(stack: Daemon, page: tuple[Any, Watch]) -> None:
    p, watch = page
    open_page(p, stack, "playground/chat", "#prompt")
    p.select_option("#model", "chat-echo")
    words = "one two three four five six seven eight nine ten eleven twelve"
    p.fill("#prompt", words)
    p.keyboard.press("Enter")
    seen = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = p.evaluate("document.querySelector('.msg.assistant')?.textContent || ''")
        if text:
            seen.add(text)
        if p.locator(".msg.assistant:not([data-streaming])").count():
            break
        p.wait_for_timeout(40)
    final = p.inner_text(".msg.assistant")
    assert final == f"echo: {words}"
    partial = [t for t in seen if t and t != final]
    assert len(partial) >= 3, f"the answer came in {len(partial) + 1} piece(s), not streamed: {seen}"
    assert p.inner_text("#ttft").endswith("ms") and float(p.inner_text("#tps")) > 0
    shot(p, "chat-streamed")
    watch.assert_clean()


def test_embeddings_compare_two_texts(stack: Daemon, page: tuple[Any, Watch]) -> None:
    p, watch = page
    open_page(p, stack, "playground/embed", "#text-a")
    p.fill("#text-a", "same words")
    p.fill("#text-b", "same words")
    p.click("#panel button.primary")
    p.wait_for_selector("#similarity .big")
    assert p.get_attribute("#similarity .big", "data-value") == "1.0000"
    watch.assert_clean()


def test_metrics_chart_the_requests_per_model(stack: Daemon, page: tuple[Any, Watch]) -> None:
    p, watch = page
    open_page(p, stack, "metrics", "#metrics")
    for _ in range(3):
        stack.op("inference.chat", model="chat-echo", prompt="hello")
    p.wait_for_selector('#metrics tr[data-metrics-model="chat-echo"]', timeout=15000)
    p.wait_for_selector("#metrics svg.chart polyline", timeout=15000)
    row = p.inner_text('#metrics tr[data-metrics-model="chat-echo"]')
    assert "ms" in row
    shot(p, "metrics-charts")
    watch.assert_clean()


def test_the_agent_panel_streams_the_conversation(stack: Daemon, page: tuple[Any, Watch]) -> None:
    p, watch = page
    open_page(p, stack, "agent", "#ask")
    p.fill("#ask", "which services are running?")
    p.click("form button.primary")
    p.wait_for_selector("#answer", timeout=60000)
    steps = p.inner_text("#steps")
    assert "you: which services are running?" in steps and "conversation " in steps
    assert "echo:" in p.inner_text("#answer")
    assert p.input_value("#session")  # the conversation goes on with the next question
    shot(p, "agent-answered")
    watch.assert_clean()


def test_the_agent_panel_asks_before_a_destructive_call(stack: Daemon, page: tuple[Any, Watch]) -> None:
    p, watch = page
    stack.create("victim-echo", name="victim")
    open_page(p, stack, "agent", "#ask")
    p.select_option("#profile", "admin")
    # the echo model says back what it is told: here, a tool call, which the agent reads from its text
    p.fill("#ask", '{"name": "service_delete", "arguments": {"service": "victim"}}')
    p.click("form button.primary")
    p.wait_for_selector("#steps [data-approval]", timeout=60000)
    assert "service_delete" in p.inner_text("#steps [data-approval]")
    assert "victim" in [s["name"] for s in stack.op("service.list")["services"]]  # nothing done before the yes
    p.click("#steps [data-approval] button:has-text('Approve')")
    p.wait_for_selector("#answer", timeout=60000)
    assert "victim" not in [s["name"] for s in stack.op("service.list")["services"]]
    assert "result-ok" in (p.get_attribute("#steps li[class^='result-']", "class") or "")
    watch.assert_clean()


# ---------------------------------------------------------------------------- keys
def test_with_a_key_nothing_shows_before_the_key_is_given(tmp_path: Path, browser: Any) -> None:
    d = Daemon(tmp_path / "home", {})
    d.start()
    try:
        d.create("secret-echo", name="secret-service")
        key = d.op("key.create", name="ui")["key"]
        d.http.headers["authorization"] = f"Bearer {key}"
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        p = ctx.new_page()
        watch = Watch().attach(p)
        sent: list[tuple[str, str | None]] = []
        p.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
        p.goto(f"{d.url}/ui/")
        p.wait_for_selector("#key")
        p.wait_for_timeout(500)
        assert p.locator("#nav").is_hidden()
        body = p.inner_text("body")
        assert "secret-service" not in body and "Dashboard" not in body
        assert all(u.endswith(("/ui/", ".js", ".css", ".svg", "/api/v1/status")) for u, _ in sent), sent
        shot(p, "key-asked")
        p.fill("#key", "aima-wrong")
        p.keyboard.press("Enter")
        p.wait_for_selector(".gate .error")
        assert "secret-service" not in p.inner_text("body")
        p.fill("#key", key)
        p.keyboard.press("Enter")
        p.wait_for_selector('#services tr[data-service="secret-service"]')
        assert p.locator("#nav").is_visible()
        assert not any(key in u for u, _ in sent)  # never in a URL
        api = [(u, a) for u, a in sent if "/api/v1/" in u and "status" not in u]
        assert api and all(a == f"Bearer {key}" for _, a in api)
        assert key not in p.content()
        # the page without a key asked once, was refused once per wrong key: nothing else failed
        watch.allow("401")
        watch.allow("Failed to load resource: the server responded with a status of 401")
        watch.assert_clean()
        ctx.close()
    finally:
        d.cleanup()


def test_a_key_created_on_the_page_is_shown_once_and_then_used(tmp_path: Path, browser: Any) -> None:
    d = Daemon(tmp_path / "home", {})
    d.start()
    try:
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        p = ctx.new_page()
        watch = Watch().attach(p)
        open_page(p, d, "keys", "#keys p")
        p.fill("#key-name", "laptop")
        p.click("form[aria-label='Create a key'] button[type=submit]")
        p.wait_for_selector("#new-key-value")
        key = p.inner_text("#new-key-value").strip()
        assert key.startswith("aima-") or len(key) > 20
        p.locator("dialog[open] button", has_text="Close").click()
        p.wait_for_selector("#keys tr[data-key]")  # the page adopted the first key: it still reads
        assert "laptop" in p.inner_text("#keys")
        r = d.http.get("/api/v1/keys")
        assert r.status_code == 401  # the daemon now needs a key
        p.click("#keys button:has-text('Revoke')")
        p.locator("dialog[open] button", has_text="Revoke laptop").click()
        p.wait_for_selector('#keys [data-state="revoked"]')
        assert d.http.get("/api/v1/keys").status_code == 200  # no key left: the daemon is open again
        watch.assert_clean()
        ctx.close()
    finally:
        d.cleanup()
