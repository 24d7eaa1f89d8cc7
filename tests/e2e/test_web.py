"""The web page in a real browser: Debian's Chromium driven by Playwright against a real
server on a loopback port (uvicorn with worker slots, over a real SQLite file; the main
flow on PostgreSQL too). Every page fails its test on a Content-Security-Policy
violation or a script error. Waits are for conditions, never for time.

Chromium is `/usr/bin/chromium` (`.ci/run` installs it); without it these tests skip
with the reason, except in CI, where they fail. `-m screenshots` refreshes the
pictures in docs/screenshots."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import IN_CI, LiveServer, wait_for, wait_for_status
from exportd.jobs import Status, utcnow
from exportd.store import SqlJobStore, open_store
from exportd.store.schema import web_sessions

pytestmark = pytest.mark.slow

Start = Callable[..., LiveServer]
Page = Any  # playwright.sync_api.Page, imported only when a browser is available

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SLOW = {"exporter": "slow", "params": {"batches": 2000, "rows_per_batch": 100, "delay": 0.05}}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite unless a test asks for PostgreSQL (`indirect` parametrisation)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite:///{tmp_path / 'exportd.db'}"
    url: str = request.getfixturevalue("pg_url")
    store = open_store(url)
    store.truncate_all()
    store.dispose()
    return url


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI needs a browser: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One Chromium for the module; each test gets its own contexts."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        _unavailable(f"Playwright is not installed: {exc}")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        except Error as exc:
            _unavailable(f"Chromium at {CHROMIUM} cannot be launched: {exc}")
        yield browser
        browser.close()


@dataclass
class Watch:
    """What must not happen in a page: CSP violations and script errors."""

    allow: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)

    def console(self, message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text and not any(a in text for a in self.allow):
            self.problems.append(f"CSP: {text}")

    def error(self, error: Any) -> None:
        self.problems.append(f"script error: {error}")


@pytest.fixture
def new_page(chromium: Any) -> Iterator[Callable[..., Page]]:
    """`new_page(width, height, context=, allow_csp=)`: a page in a new browser context
    (or in `context`, sharing its cookies, as a second tab). The test fails at teardown
    if any of its pages logged a CSP violation (other than one naming a string in
    `allow_csp`) or threw a script error."""
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    contexts: list[Any] = []
    watches: list[Watch] = []

    def make(
        width: int = 1100, height: int = 900, context: Any = None, allow_csp: tuple[str, ...] = ()
    ) -> Page:
        if context is None:
            context = chromium.new_context(viewport={"width": width, "height": height})
            context.set_default_timeout(20_000)
            contexts.append(context)
        page = context.new_page()
        watch = Watch(allow_csp)
        page.on("console", watch.console)
        page.on("pageerror", watch.error)
        watches.append(watch)
        return page

    yield make
    for context in contexts:
        context.close()
    problems = [problem for watch in watches for problem in watch.problems]
    assert problems == [], problems


# -- helpers ------------------------------------------------------------------------------


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def sign_in(page: Page, server: LiveServer, token: str, path: str = "/") -> None:
    """Open `path`, get sent to the sign-in form, sign in, and land on `path`."""
    page.goto(server.url + path)
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + path)


def create(server: LiveServer, token: str, body: dict[str, Any]) -> str:
    response = server.client(token).post("/v1/exports", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def jobs_in(store: SqlJobStore) -> list[Any]:
    return store.list_jobs(None, limit=200).jobs


def card(page: Page, job_id: str) -> Any:
    return page.locator(f"#job-{job_id}")


def status_of(page: Page, job_id: str) -> Any:
    return card(page, job_id).locator('[data-field="status"]')


def percent(page: Page, job_id: str) -> int:
    text = card(page, job_id).locator('[data-field="percent"]').text_content() or ""
    return int(text.rstrip("%") or 0)


def wait_percent_above(page: Page, job_id: str, value: int) -> int:
    """Wait until the page shows the job past `value` percent; returns what it shows."""
    page.wait_for_function(
        """([id, value]) => {
            const el = document.querySelector(`#job-${id} [data-field="percent"]`);
            return el !== null && parseInt(el.textContent || "0", 10) > value;
        }""",
        arg=[job_id, value],
    )
    return percent(page, job_id)


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


# -- tests --------------------------------------------------------------------------------


def test_keyboard_only_sign_in_and_the_pages_csp(
    live_server: Start, new_page: Callable[..., Page]
) -> None:
    """Tab reaches the labelled Token input and the Sign in button, Enter signs in; the
    pages carry a CSP without 'unsafe-inline'."""
    server = live_server(workers=False)
    token = server.token("alice")
    page = new_page()
    response = page.goto(server.url + "/")
    assert page.url.startswith(server.url + "/sign-in")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "token":
            break
    else:
        pytest.fail("Tab never reached the Token input")
    page.keyboard.type(token)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Sign in"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Exports", exact=True)).to_be_visible()


def test_a_wrong_token_shows_an_error_on_the_form(
    live_server: Start, new_page: Callable[..., Page]
) -> None:
    """A token that is not valid keeps the browser on the form, with the error tied to
    the input, and gives it no session cookie."""
    server = live_server(workers=False)
    page = new_page()
    page.goto(server.url + "/sign-in")
    page.get_by_label("Token").fill("exd_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That token is not valid")
    expect(page.get_by_label("Token")).to_have_attribute("aria-invalid", "true")
    cookies = {c["name"] for c in page.context.cookies()}
    assert "exportd_session" not in cookies


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_an_export_from_the_form_progresses_survives_reload_and_cancels(
    live_server: Start, new_page: Callable[..., Page]
) -> None:
    """Created from the form, the export's progress rises live; a reload shows the same
    job still progressing (no second job); a second tab follows it; Cancel stops it."""
    server = live_server(grace_seconds=0)
    store = server.runtime.store
    page = new_page()
    sign_in(page, server, server.token("alice"))
    other = new_page(context=page.context)
    other.goto(server.url + "/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="New export").click()
    page.get_by_label("Exporter").select_option("slow")
    page.get_by_role("button", name="Choose exporter").click()
    page.get_by_label("Batches").fill("2000")
    page.get_by_label("Rows Per Batch").fill("100")
    page.get_by_label("Delay").fill("0.05")
    page.get_by_label("File name").fill("orders.csv")
    page.get_by_role("button", name="Create export").click()
    expect(page.locator(".flash")).to_have_text("The export was queued.")
    (job,) = jobs_in(store)
    assert (job.exporter, job.params["batches"], job.filename) == ("slow", 2000, "orders.csv")

    expect(status_of(page, job.id)).to_have_text("running")
    shown = wait_percent_above(page, job.id, 0)
    wait_percent_above(page, job.id, shown)
    wait_percent_above(other, job.id, 0)  # the other tab heard of the new job and follows it

    before = percent(page, job.id)
    page.reload()
    expect(status_of(page, job.id)).to_have_text("running")
    assert percent(page, job.id) >= before
    wait_percent_above(page, job.id, percent(page, job.id))
    assert [j.id for j in jobs_in(store)] == [job.id]

    card(page, job.id).get_by_role("button", name="Cancel").click()
    expect(status_of(page, job.id)).to_have_text("cancelled")
    expect(status_of(other, job.id)).to_have_text("cancelled")
    assert store.get(job.id).status == Status.CANCELLED
    assert len(jobs_in(store)) == 1


def test_a_failed_export_is_retried_from_its_page(
    live_server: Start, new_page: Callable[..., Page]
) -> None:
    """The job page shows the error (code, message, retryable); Retry queues it again and
    the timeline shows the retry and the new attempt."""
    server = live_server(grace_seconds=0)
    token = server.token("alice")
    flaky = {"exporter": "flaky", "params": {"fail_times": 1}, "max_attempts": 1}
    job_id = create(server, token, flaky)
    wait_for_status(server.runtime.store, job_id, Status.FAILED)
    page = new_page()
    sign_in(page, server, token, f"/exports/{job_id}")
    expect(status_of(page, job_id)).to_have_text("failed")
    errors = page.get_by_role("region", name="Error")
    expect(errors).to_contain_text("upstream_unavailable")
    expect(errors).to_contain_text("attempt 1 failed")
    expect(errors).to_contain_text("yes")

    page.get_by_role("button", name="Retry").click()
    timeline = page.get_by_role("region", name="Timeline")
    expect(timeline).to_contain_text("retried")
    expect(timeline.locator(".moment-started")).to_have_count(2)
    expect(status_of(page, job_id)).to_have_text("failed")
    types = [e.type for e in server.runtime.store.events_after(0, job_id=job_id)]
    assert types.count("retried") == 1 and types.count("started") == 2

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(server.url + "/")
    expect(page.locator(".flash")).to_have_text("The export and its files were deleted.")
    assert jobs_in(server.runtime.store) == []


def test_closing_the_browser_leaves_the_export_running(
    live_server: Start, new_page: Callable[..., Page]
) -> None:
    """The export belongs to the server: the browser that watched it going away mid-run
    changes nothing, and it completes."""
    server = live_server(grace_seconds=0)
    token = server.token("alice")
    job_id = create(server, token, {**SLOW, "params": {**SLOW["params"], "batches": 60}})
    page = new_page()
    sign_in(page, server, token)
    wait_percent_above(page, job_id, 0)
    page.context.close()
    job = wait_for_status(server.runtime.store, job_id, Status.COMPLETED, timeout=60)
    assert job.progress.done == 60 * 100 and job.attempt == 1


def test_a_download_is_the_artifact(live_server: Start, new_page: Callable[..., Page]) -> None:
    """Download gives exactly the stored file: its bytes match the artifact row's size
    and sha256, which the job page shows."""
    server = live_server(grace_seconds=0)
    token = server.token("alice")
    body = {"exporter": "synthetic", "params": {"rows": 3000, "seed": 7}, "compression": "gzip"}
    job_id = create(server, token, body)
    job = wait_for_status(server.runtime.store, job_id, Status.COMPLETED)
    (artifact,) = job.artifacts
    page = new_page()
    sign_in(page, server, token)
    with page.expect_download() as download:
        card(page, job_id).get_by_role("link", name="Download").click()
    data = Path(download.value.path()).read_bytes()
    assert len(data) == artifact.size
    assert hashlib.sha256(data).hexdigest() == artifact.sha256
    assert download.value.suggested_filename == artifact.name
    page.goto(f"{server.url}/exports/{job_id}")
    expect(page.get_by_role("region", name="Files")).to_contain_text(artifact.sha256)


def test_another_owner_sees_none_of_it(live_server: Start, new_page: Callable[..., Page]) -> None:
    """Bob sees no trace of Alice's export (not in his list, her job's page and JSON are
    404 for him); an admin sees it with its owner, and can filter by owner."""
    server = live_server(workers=False)
    job_id = create(server, server.token("alice"), {"exporter": "synthetic"})
    bob = new_page()
    sign_in(bob, server, server.token("bob"))
    expect(bob.get_by_text("No exports yet.")).to_be_visible()
    expect(bob.locator("[data-job]")).to_have_count(0)
    response = bob.goto(f"{server.url}/exports/{job_id}")
    assert response.status == 404
    expect(bob.get_by_role("heading", name="No such export")).to_be_visible()
    status = bob.evaluate("async (id) => (await fetch('/v1/exports/' + id)).status", job_id)
    assert status == 404

    admin = new_page()
    sign_in(admin, server, server.admin_token)
    expect(card(admin, job_id).locator('[data-field="owner"]')).to_have_text("alice")
    admin.get_by_label("Owner").fill("bob")
    admin.get_by_role("button", name="Filter").click()
    expect(admin.get_by_text("No exports match these filters.")).to_be_visible()
    expect(admin.locator("[data-job]")).to_have_count(0)


def test_a_bad_value_shows_the_fields_error(
    live_server: Start, new_page: Callable[..., Page]
) -> None:
    """A value the exporter refuses, and JSON that does not parse, are shown next to their
    fields (and in a focused summary); nothing is queued until they are fixed."""
    server = live_server(workers=False)
    store = server.runtime.store
    page = new_page()
    sign_in(page, server, server.token("alice"), "/exports/new")
    page.get_by_label("Rows").fill("-5")
    page.get_by_label("Columns").fill('{"id": ')
    page.get_by_role("button", name="Create export").click()
    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    rows = page.get_by_label("Rows")
    expect(rows).to_have_attribute("aria-invalid", "true")
    expect(rows).to_have_value("-5")
    expect(page.locator("#param-rows-error-1")).to_contain_text("greater than or equal to 0")
    expect(page.locator("#param-columns-error-1")).to_contain_text("not valid JSON")
    assert jobs_in(store) == []

    page.get_by_label("Rows").fill("25")
    page.get_by_label("Columns").fill("")
    page.get_by_role("button", name="Create export").click()
    expect(page.locator(".flash")).to_have_text("The export was queued.")
    (job,) = jobs_in(store)
    assert job.params["rows"] == 25


def test_an_expired_session_returns_to_sign_in(
    live_server: Start, new_page: Callable[..., Page]
) -> None:
    """When the session expires, the open page goes back to the sign-in form at its next
    request (here: fetching a new job's card), and signing in returns to it."""
    server = live_server(workers=False)
    token = server.token("alice")
    page = new_page()
    sign_in(page, server, token)
    expect(page.locator("#jobs")).to_have_attribute("data-live-mode", "stream")
    with server.runtime.store.engine.begin() as conn:
        conn.execute(web_sessions.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    create(server, token, {"exporter": "synthetic"})  # its event makes the page ask for its card
    page.wait_for_url(re.compile(r"/sign-in\?expired=1"))
    expect(page.get_by_role("status").first).to_contain_text("Your session has ended")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/")
    expect(page.locator("[data-job]")).to_have_count(1)


def test_the_page_polls_when_the_stream_fails(
    live_server: Start, new_page: Callable[..., Page]
) -> None:
    """With the event stream refused, the list falls back to polling the JSON API: a new
    job appears and its progress still rises."""
    server = live_server(grace_seconds=0)
    token = server.token("alice")
    page = new_page()
    page.route("**/v1/events*", lambda route: route.abort())
    sign_in(page, server, token)
    expect(page.locator("#jobs")).to_have_attribute("data-live-mode", "polling")
    job_id = create(server, token, SLOW)
    expect(status_of(page, job_id)).to_have_text("running")
    wait_percent_above(page, job_id, wait_percent_above(page, job_id, 0))


def test_readable_at_phone_width(live_server: Start, new_page: Callable[..., Page]) -> None:
    """At 390 px wide, the list, a job page and the create form never scroll sideways."""
    server = live_server(grace_seconds=0)
    token = server.token("alice")
    long_name = "quarterly-orders-for-every-region-and-every-currency-2026-final.csv"
    done = create(server, token, {"exporter": "synthetic", "filename": long_name})
    create(server, token, {"exporter": "flaky", "params": {"permanent": True}})
    wait_for_status(server.runtime.store, done, Status.COMPLETED)
    page = new_page(width=390, height=844)
    sign_in(page, server, token)
    for path in ("/", f"/exports/{done}", "/exports/new"):
        page.goto(server.url + path)
        assert no_horizontal_scroll(page), path


def test_api_docs_work_offline(live_server: Start, new_page: Callable[..., Page]) -> None:
    """Swagger UI and Redoc render with every request off this server refused; Redoc's
    only outside request (its logo) is blocked by the CSP before it leaves."""
    server = live_server(workers=False)
    page = new_page(allow_csp=("cdn.redoc.ly",))
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
    page.route(lambda url: not url.startswith(server.url), lambda route: route.abort())
    page.goto(server.url + "/docs")
    operation = page.locator('.opblock-summary-path[data-path="/v1/exports"]').first
    expect(operation).to_be_visible()
    operation.click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    page.goto(server.url + "/redoc")
    expect(page.get_by_role("heading", name=re.compile(r"^exportd"))).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("List Exports")).first).to_be_visible()
    assert set(outside) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}


@pytest.mark.screenshots
def test_screenshots(
    live_server: Start, new_page: Callable[..., Page], request: pytest.FixtureRequest
) -> None:
    """Writes docs/screenshots/list.png (a job visibly progressing) and job.png."""
    if "screenshots" not in (request.config.option.markexpr or ""):
        pytest.skip("refreshes docs/screenshots: run with -m screenshots")
    server = live_server(concurrency=3, grace_seconds=0)
    token = server.token("alice")
    store = server.runtime.store
    done = create(
        server,
        token,
        {
            "exporter": "synthetic",
            "params": {"rows": 50000},
            "format": "parquet",
            "compression": "zstd",
            "filename": "orders-2026.parquet",
        },
    )
    wait_for_status(store, done, Status.COMPLETED)
    failed = create(
        server, token, {"exporter": "flaky", "params": {"permanent": True}, "filename": "crm.csv"}
    )
    wait_for_status(store, failed, Status.FAILED)
    running = create(server, token, {**SLOW, "filename": "customers.csv.gz", "compression": "gzip"})
    page = new_page(width=1000, height=1000)
    sign_in(page, server, token)
    wait_percent_above(page, running, 8)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "list.png"), full_page=True)
    page.goto(f"{server.url}/exports/{running}")
    wait_percent_above(page, running, percent(page, running) + 2)
    page.screenshot(path=str(SCREENSHOTS / "job.png"), full_page=True)
    wait_for(lambda: (SCREENSHOTS / "job.png").stat().st_size > 0, what="the screenshot")
    store.request_cancel(running)
