"""The web page's sessions and CSRF over real HTTP (a real server on loopback, real
SQLite): the cookie's attributes, what a cookie may authorise on `/v1`, sign-in and
sign-out, revocation, form posts, and the offline API docs."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from conftest import LiveServer, free_port, settings_env, wait_for
from exportd.config import Settings
from exportd.jobs import Status

Start = Callable[..., LiveServer]
HIDDEN = re.compile(r'name="(csrf|next)" value="([^"]*)"')


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """These tests are about HTTP, not the store: SQLite only (the store's sessions are
    tested on both databases in test_store_sessions.py)."""
    return f"sqlite:///{tmp_path / 'exportd.db'}"


def form_values(html: str) -> dict[str, str]:
    return dict(HIDDEN.findall(html))


def set_cookies(response: httpx.Response) -> dict[str, SimpleCookie]:
    found = {}
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            found[name] = cookie
    return found


def browser(server: LiveServer) -> httpx.Client:
    """A client that keeps cookies, as a browser does, and does not follow redirects."""
    client = server.client(None)
    client.follow_redirects = False
    return client


def sign_in(client: httpx.Client, token: str, next_path: str = "/") -> httpx.Response:
    page = client.get("/sign-in", params={"next": next_path})
    values = form_values(page.text)
    return client.post("/sign-in", data={**values, "token": token})


def csrf_of(client: httpx.Client) -> str:
    values = form_values(client.get("/exports/new").text)
    return values["csrf"]


def test_signing_in_sets_a_strict_http_only_expiring_cookie(live_server: Start) -> None:
    """A good token gives a session cookie that scripts cannot read, other sites cannot
    send, and that expires with the session; over plain HTTP it is not Secure."""
    server = live_server(workers=False, session_ttl_seconds=3600)
    client = browser(server)
    response = sign_in(client, server.token("alice"), "/exports/new")
    assert response.status_code == 303 and response.headers["location"] == "/exports/new"
    cookie = set_cookies(response)["exportd_session"]["exportd_session"]
    assert cookie["httponly"] and cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/" and cookie["max-age"] == "3600"
    assert not cookie["secure"]
    assert client.get("/").status_code == 200


def test_a_wrong_token_or_a_missing_form_cookie_gives_no_session(live_server: Start) -> None:
    """A wrong token is 401 with the form again; a post without the form's own cookie
    (another site signing the browser in) or marked cross-site is refused before the
    token is even looked at."""
    server = live_server(workers=False)
    token = server.token("alice")
    client = browser(server)
    wrong = sign_in(client, "exd_wrong")
    assert wrong.status_code == 401 and "That token is not valid" in wrong.text
    assert "exportd_session" not in set_cookies(wrong)

    forged = httpx.post(f"{server.url}/sign-in", data={"token": token, "csrf": "guess"})
    assert forged.status_code == 400 and "exportd_session" not in set_cookies(forged)

    values = form_values(client.get("/sign-in").text)
    cross = client.post(
        "/sign-in", data={**values, "token": token}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 400 and "exportd_session" not in set_cookies(cross)


def test_next_only_leads_to_this_site(live_server: Start) -> None:
    """After signing in, a `next` that names another host leads home instead."""
    server = live_server(workers=False)
    client = browser(server)
    response = sign_in(client, server.token("alice"), "//evil.example/steal")
    assert response.headers["location"] == "/"


def test_the_cookie_reads_v1_and_the_stream_but_writes_only_with_the_csrf_token(
    live_server: Start,
) -> None:
    """With the cookie alone, the page's GETs and the SSE stream work; a state-changing
    /v1 request is 403 without X-CSRF-Token (or with another session's) and works
    with it."""
    server = live_server(workers=False)
    client = browser(server)
    sign_in(client, server.token("alice"))
    assert client.get("/v1/exports").status_code == 200
    assert client.get("/v1/exporters").status_code == 200
    with client.stream("GET", "/v1/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert next(stream.iter_lines()) == "retry: 2000"

    body = {"exporter": "synthetic"}
    refused = client.post("/v1/exports", json=body)
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    other = browser(server)
    sign_in(other, server.token("alice"))
    stolen = client.post("/v1/exports", json=body, headers={"X-CSRF-Token": csrf_of(other)})
    assert stolen.status_code == 403
    assert server.runtime.store.list_jobs(None).jobs == []

    made = client.post("/v1/exports", json=body, headers={"X-CSRF-Token": csrf_of(client)})
    assert made.status_code == 202 and made.json()["owner"] == "alice"
    job_id = made.json()["id"]
    assert client.post(f"/v1/exports/{job_id}/cancel").status_code == 403
    assert client.delete(f"/v1/exports/{job_id}").status_code == 403
    assert server.runtime.store.get(job_id).status == Status.QUEUED


def test_an_authorization_header_is_judged_alone(live_server: Start) -> None:
    """Bearer tokens work exactly as before: a wrong one is 401 even beside a valid
    session cookie, and a good one needs no CSRF token."""
    server = live_server(workers=False)
    token = server.token("alice")
    client = browser(server)
    sign_in(client, token)
    wrong = client.get("/v1/exports", headers={"Authorization": "Bearer exd_wrong"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    bearer = client.post(
        "/v1/exports", json={"exporter": "synthetic"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert bearer.status_code == 202


def test_signing_out_ends_the_session(live_server: Start) -> None:
    """Sign-out needs the CSRF field; then the old cookie no longer works anywhere."""
    server = live_server(workers=False)
    client = browser(server)
    sign_in(client, server.token("alice"))
    secret = client.cookies["exportd_session"]
    assert client.post("/sign-out", data={"csrf": "nope"}).status_code == 403
    assert client.get("/v1/exports").status_code == 200
    out = client.post("/sign-out", data={"csrf": csrf_of(client)})
    assert out.status_code == 303 and out.headers["location"] == "/sign-in?signed_out=1"
    assert server.runtime.store.find_session(secret) is None
    replay = httpx.get(f"{server.url}/v1/exports", cookies={"exportd_session": secret})
    assert replay.status_code == 401


def test_revoking_the_token_sends_the_page_back_to_sign_in(live_server: Start) -> None:
    """Once its token is revoked, a session's pages redirect to the sign-in form (saying
    the session ended), its fragments and /v1 requests are 401, and the cookie is
    dropped."""
    server = live_server(workers=False)
    client = browser(server)
    sign_in(client, server.token("alice"))
    (token,) = server.runtime.store.list_tokens("alice")
    server.runtime.store.revoke_token(token.id)
    page = client.get("/", params={"status": "running"})
    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in?next=/%3Fstatus%3Drunning&expired=1"
    assert set_cookies(page)["exportd_session"]["exportd_session"]["max-age"] == "0"
    assert client.get("/exports/x/card").status_code == 401
    assert client.get("/v1/exports").status_code == 401
    assert "Your session has ended" in client.get(page.headers["location"]).text


def test_form_posts_need_the_sessions_csrf_field(live_server: Start) -> None:
    """Cancel, retry, delete and create from the page are refused (403, nothing done)
    without the session's CSRF field, or when the browser says another site sent them."""
    server = live_server(workers=False)
    token = server.token("alice")
    job_id = server.client(token).post("/v1/exports", json={"exporter": "synthetic"}).json()["id"]
    client = browser(server)
    sign_in(client, token)
    csrf = csrf_of(client)
    for action in ("cancel", "retry", "delete"):
        assert client.post(f"/exports/{job_id}/{action}", data={}).status_code == 403
    cross = client.post(
        f"/exports/{job_id}/cancel", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    assert client.post("/exports/new", data={"exporter": "synthetic"}).status_code == 403
    assert server.runtime.store.get(job_id).status == Status.QUEUED
    assert len(server.runtime.store.list_jobs(None).jobs) == 1
    done = client.post(f"/exports/{job_id}/cancel", data={"csrf": csrf, "back": "/?status=queued"})
    assert done.status_code == 303 and done.headers["location"] == "/?status=queued"
    assert server.runtime.store.get(job_id).status == Status.CANCELLED


def test_the_form_queues_one_export_per_form_shown(live_server: Start) -> None:
    """The create form carries an Idempotency-Key: sending the same form twice (a double
    click, a resubmission) queues one export."""
    server = live_server(workers=False)
    client = browser(server)
    sign_in(client, server.token("alice"))
    page = client.get("/exports/new", params={"exporter": "synthetic"}).text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert key is not None
    data = {
        "csrf": csrf_of(client),
        "exporter": "synthetic",
        "idempotency_key": key.group(1),
        "param-rows": "10",
        "field-format": "csv",
        "field-compression": "none",
    }
    for _ in range(2):
        response = client.post("/exports/new", data=data)
        assert response.status_code == 303 and response.headers["location"] == "/"
    (job,) = server.runtime.store.list_jobs(None).jobs
    assert job.params["rows"] == 10 and job.owner == "alice"


def test_the_list_filters_and_pages_with_the_cursor(live_server: Start) -> None:
    """The list shows 20 exports a page, newest first, with a link to the older ones (the
    store's cursor); filters by status and exporter narrow it."""
    server = live_server(workers=False, max_active_per_owner=50)
    token = server.token("alice")
    api = server.client(token)
    ids = [api.post("/v1/exports", json={"exporter": "synthetic"}).json()["id"] for _ in range(22)]
    slow = api.post("/v1/exports", json={"exporter": "slow"}).json()["id"]
    api.post(f"/v1/exports/{ids[0]}/cancel")
    client = browser(server)
    sign_in(client, token)
    cards = re.compile(r'<li class="job" id="job-([0-9a-f-]+)"')

    first = client.get("/").text
    assert cards.findall(first) == [slow, *reversed(ids)][:20]
    older = re.search(r'href="/\?(cursor=[^"]+)">Older exports', first)
    assert older is not None
    second = client.get(f"/?{older.group(1)}").text
    assert cards.findall(second) == [ids[2], ids[1], ids[0]]
    assert "Newest exports" in second and "Older exports" not in second

    assert cards.findall(client.get("/", params={"exporter": "slow"}).text) == [slow]
    assert cards.findall(client.get("/", params={"status": "cancelled"}).text) == [ids[0]]
    unknown = client.get("/", params={"status": "paused"}).text
    assert "There is no status" in unknown and len(cards.findall(unknown)) == 20


def test_html_pages_have_a_strict_csp_and_json_is_unchanged(live_server: Start) -> None:
    """Pages get a CSP without 'unsafe-inline' and anti-framing headers; JSON answers of
    /v1 get none of these headers (the API's responses are as before)."""
    server = live_server(workers=False)
    page = httpx.get(f"{server.url}/sign-in")
    policy = page.headers["content-security-policy"]
    assert "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    api = server.client(server.admin_token).get("/v1/exports")
    assert "content-security-policy" not in api.headers
    assert "x-frame-options" not in api.headers


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_api_docs_reference_only_this_servers_files(live_server: Start, path: str) -> None:
    """The docs pages name only same-origin assets, and every one of them is served."""
    server = live_server(workers=False)
    page = httpx.get(server.url + path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets, page.text
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        assert httpx.get(server.url + asset).status_code == 200, asset
    if path == "/docs":
        assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page.text
        assert "unsafe-inline" not in page.headers["content-security-policy"]


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """`exportd serve --no-workers` as users run it, in a subprocess; returns its URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**settings: str) -> str:
        port = free_port()
        config = Settings(home=tmp_path / f"home-{port}", port=port)
        env = {**settings_env(config), **settings}
        command = [sys.executable, "-m", "exportd", "serve", "--no-workers"]
        procs.append(subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL))
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{url}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=60, interval=0.1, what="exportd serve")
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def _cookie_after_sign_in(url: str, token: str) -> SimpleCookie:
    """Sign in as a browser behind a TLS-terminating proxy would (it sends a Secure
    cookie back, which httpx over plain HTTP would not)."""
    with httpx.Client(base_url=url, headers={"X-Forwarded-Proto": "https"}) as client:
        values = form_values(client.get("/sign-in").text)
        client.cookies.clear()
        response = client.post(
            "/sign-in",
            data={**values, "token": token},
            headers={"Cookie": f"exportd_signin={values['csrf']}"},
        )
        assert response.status_code == 303
        return set_cookies(response)["exportd_session"]["exportd_session"]


@pytest.mark.slow
def test_x_forwarded_proto_counts_only_from_trusted_proxies(
    serve_process: Callable[..., str], tmp_path: Path
) -> None:
    """`exportd serve` marks the cookie Secure on X-Forwarded-Proto: https only when the
    peer is in EXPORTD_TRUSTED_PROXIES (uvicorn's own proxy handling is off)."""
    from exportd.store import open_store

    for trusted, secure in (("", False), ("127.0.0.1", True)):
        database = f"sqlite:///{tmp_path / f'proxy-{secure}-{bool(trusted)}.db'}"
        store = open_store(database)
        store.migrate()
        _, token = store.create_token("alice")
        store.dispose()
        url = serve_process(EXPORTD_DATABASE_URL=database, EXPORTD_TRUSTED_PROXIES=trusted)
        assert bool(_cookie_after_sign_in(url, token)["secure"]) is secure, trusted
