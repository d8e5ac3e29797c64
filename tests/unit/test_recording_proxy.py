"""The recording proxy tests use to watch what a cloud driver sends its emulator: real sockets both ways."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fixtures.recording_proxy import RecordingProxy

GZIPPED = gzip.compress(b'{"rows": [[1]]}')


class Upstream:
    """A tiny HTTP/1.1 server: echoes what it got as JSON (``/gzip`` answers gzipped) and records it."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str, bytes]] = []
        self.cond = threading.Condition()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def reply(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with upstream.cond:
                    upstream.hits.append((self.command, self.path, body))
                    upstream.cond.notify_all()
                gzipped = self.path == "/gzip"
                echo = {"method": self.command, "path": self.path, "body": body.hex()}
                payload = GZIPPED if gzipped else json.dumps(echo).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if gzipped:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = reply

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def paths(self) -> list[str]:
        with self.cond:
            return [path for _, path, _ in self.hits]

    def wait_hit(self, path: str) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: path in [p for _, p, _ in self.hits], timeout=10), path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[RecordingProxy]:
    with RecordingProxy(upstream.url) as proxy:
        yield proxy


def request(
    proxy: RecordingProxy, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def in_thread(proxy: RecordingProxy, path: str) -> tuple[threading.Thread, list[Any]]:
    """Sends ``GET path`` from another thread; the list gets the (status, body) or the exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            status, _, body = request(proxy, "GET", path)
            outcome.append((status, body))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_records_a_gzipped_json_post_and_forwards_it_untouched(
    proxy: RecordingProxy, upstream: Upstream
) -> None:
    payload = {"sqlText": "SELECT 1", "queryContextDTO": {"entries": []}}
    raw = gzip.compress(json.dumps(payload).encode())
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json", "X-Trace": "t1"}
    status, _, body = request(proxy, "POST", "/queries/v1/query-request?requestId=r1&x=1&x=2", raw, headers)

    assert status == 200
    assert json.loads(body)["path"] == "/queries/v1/query-request?requestId=r1&x=1&x=2"
    assert upstream.hits == [("POST", "/queries/v1/query-request?requestId=r1&x=1&x=2", raw)]
    [exchange] = proxy.exchanges
    assert (exchange.method, exchange.path) == ("POST", "/queries/v1/query-request")
    assert exchange.query == {"requestId": ["r1"], "x": ["1", "2"]}
    assert exchange.body == raw and exchange.json == payload
    assert exchange.headers["content-encoding"] == "gzip" and exchange.headers["x-trace"] == "t1"
    assert exchange.status == 200 and exchange.response_body == body
    assert exchange.received.is_set() and exchange.answered.is_set()
    assert exchange.finished is not None and exchange.finished >= exchange.started


def test_keeps_one_client_connection_alive_across_methods_and_chunked_bodies(
    proxy: RecordingProxy, upstream: Upstream
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        sockets = []
        for method, body in [
            ("GET", None),
            ("HEAD", None),
            ("PUT", b"put"),
            ("PATCH", b"{}"),
            ("DELETE", None),
        ]:
            conn.request(method, f"/{method.lower()}", body=body)
            response = conn.getresponse()
            data = response.read()
            assert response.status == 200
            if method == "HEAD":
                assert data == b"" and int(response.headers["Content-Length"]) > 0
            else:
                assert json.loads(data)["body"] == (body or b"").hex()
            sockets.append(conn.sock)
        conn.request("POST", "/chunked", body=iter([b"ab", b"cde"]), encode_chunked=True)
        response = conn.getresponse()
        assert json.loads(response.read())["body"] == b"abcde".hex()
        sockets.append(conn.sock)
    finally:
        conn.close()

    assert len({id(sock) for sock in sockets}) == 1 and sockets[0] is not None  # never reconnected
    assert [str(x) for x in proxy.exchanges] == [
        "GET /get", "HEAD /head", "PUT /put", "PATCH /patch", "DELETE /delete", "POST /chunked"
    ]  # fmt: skip
    assert proxy.exchanges[-1].body == b"abcde"
    assert upstream.hits[-1] == ("POST", "/chunked", b"abcde")


def test_relays_a_gzipped_response_as_is(proxy: RecordingProxy) -> None:
    status, headers, body = request(proxy, "GET", "/gzip")
    assert (status, headers["content-encoding"], body) == (200, "gzip", GZIPPED)
    assert proxy.wait_for(lambda x: x.path == "/gzip", answered=True).response_json == {"rows": [[1]]}


def test_delay_holds_one_request_until_an_event_while_others_pass(
    proxy: RecordingProxy, upstream: Upstream
) -> None:
    gate = threading.Event()
    rule = proxy.delay(lambda x: x.path == "/slow", until=gate)
    thread, outcome = in_thread(proxy, "/slow")
    held = proxy.wait_for(lambda x: x.path == "/slow")  # arrived, and still held

    assert request(proxy, "GET", "/fast")[0] == 200  # another connection is not blocked
    assert not held.answered.is_set() and outcome == [] and "/slow" not in upstream.paths()

    gate.set()
    thread.join(timeout=30)
    assert outcome[0][0] == 200 and held.status == 200
    assert upstream.paths() == ["/fast", "/slow"]
    assert proxy.wait_for(lambda x: x.path == "/slow", answered=True) is held
    proxy.remove(rule)


def test_delay_forward_first_holds_only_the_response(proxy: RecordingProxy, upstream: Upstream) -> None:
    rule = proxy.delay(lambda x: x.path == "/job", forward_first=True)
    thread, outcome = in_thread(proxy, "/job")
    upstream.wait_hit("/job")  # upstream answered; the client still waits
    assert outcome == [] and not proxy.wait_for(lambda x: x.path == "/job").answered.is_set()

    proxy.remove(rule)  # removing a rule lets its held requests go
    thread.join(timeout=30)
    assert outcome[0][0] == 200


def test_delay_for_seconds_then_answers(proxy: RecordingProxy) -> None:
    proxy.delay(lambda x: x.path == "/later", seconds=0.2)
    assert request(proxy, "GET", "/later")[0] == 200
    exchange = proxy.wait_for(lambda x: x.path == "/later", answered=True)
    assert exchange.finished is not None and exchange.finished - exchange.started >= 0.2


def test_inject_answers_with_the_canned_payload_without_reaching_upstream(
    proxy: RecordingProxy, upstream: Upstream
) -> None:
    error = {"success": False, "code": "000604", "message": "SQL execution canceled"}
    proxy.inject(lambda x: x.json["sqlText"] == "SELECT 2", status=422, body=error, times=1)

    status, headers, body = request(proxy, "POST", "/q", json.dumps({"sqlText": "SELECT 2"}))
    assert (status, headers["content-type"], json.loads(body)) == (422, "application/json", error)
    assert upstream.hits == [] and proxy.exchanges[0].injected

    assert request(proxy, "POST", "/q", json.dumps({"sqlText": "SELECT 2"}))[0] == 200  # times=1 is used up
    assert request(proxy, "GET", "/no-body")[0] == 200  # a predicate that raises does not match
    assert upstream.paths() == ["/q", "/no-body"]


def test_drop_forwards_then_closes_the_connection_without_an_answer(
    proxy: RecordingProxy, upstream: Upstream
) -> None:
    proxy.drop(lambda x: x.path == "/run", times=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        request(proxy, "POST", "/run", "write")
    assert upstream.paths() == ["/run"]  # upstream ran it; the client never heard
    exchange = proxy.wait_for(lambda x: x.path == "/run", answered=True)
    assert exchange.status is None and exchange.error == "dropped by a rule after it was forwarded"
    assert request(proxy, "POST", "/run", "again")[0] == 200  # times=1 is used up


def test_wait_for_times_out_naming_what_it_waited_for(proxy: RecordingProxy) -> None:
    request(proxy, "GET", "/seen")
    with pytest.raises(
        TimeoutError, match=r"lambda at test_recording_proxy\.py:\d+ arrived .*saw: GET /seen"
    ):
        proxy.wait_for(lambda x: x.path == "/never", timeout=0.1)
    with pytest.raises(TimeoutError, match="the abort request answered"):
        proxy.wait_for(lambda x: x.path == "/abort", timeout=0.1, answered=True, what="the abort request")


def test_upstream_down_gives_502_with_the_reason() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with RecordingProxy(dead) as proxy:
        status, _, body = request(proxy, "GET", "/x")
        assert status == 502 and b"ConnectionRefusedError" in body
        assert "ConnectionRefusedError" in (proxy.exchanges[0].error or "")


def test_close_while_holding_returns_and_leaves_no_thread(upstream: Upstream) -> None:
    before = set(threading.enumerate())
    proxy = RecordingProxy(upstream.url)
    proxy.delay(lambda x: x.path == "/held")  # held until close()
    idle = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)  # a pooled, idle connection
    idle.request("GET", "/warm")
    idle.getresponse().read()
    thread, outcome = in_thread(proxy, "/held")
    held = proxy.wait_for(lambda x: x.path == "/held")

    proxy.close()
    thread.join(timeout=30)
    idle.close()

    assert isinstance(outcome[0], (http.client.HTTPException, OSError))  # the client sees the cut
    assert held.answered.is_set() and held.status is None and "closed" in (held.error or "")
    assert set(threading.enumerate()) == before
    proxy.close()  # idempotent


def test_runs_by_hand_and_logs_each_exchange(upstream: Upstream) -> None:
    script = Path(__file__).parents[2] / "fixtures" / "recording_proxy.py"
    process = subprocess.Popen([sys.executable, str(script), upstream.url], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        conn.request("GET", "/hello?a=1")
        assert conn.getresponse().status == 200
        conn.close()
        assert process.stdout.readline().startswith("GET /hello?a=1 -> 200 ")
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
