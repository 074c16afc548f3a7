"""A fake Twilio Messages API on 127.0.0.1, for the real SDK to talk to.

Speaks the shape the SDK expects (``/2010-04-01/Accounts/{sid}/Messages.json``: create with
201, list with ``messages`` and paging keys), checks HTTP Basic auth, records every request
with its arrival time, and can be scripted to answer the next creates with a Twilio error,
a 429 with Retry-After, a 500, or a hang *after* creating the message (the ambiguous
timeout). It also sends status callbacks signed exactly as Twilio signs them.

Use in a test module: ``from tests.support.fake_twilio import fake_twilio  # noqa: F401``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
FROM_NUMBER = "+12125550100"


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    at: float  # time.time() on arrival
    authorized: bool


@dataclass
class Scripted:
    status: int
    code: int | None = None
    message: str = ""
    retry_after: str | None = None
    hang: float | None = None  # seconds: create the message, then answer too late
    drop: bool = False  # close the connection without creating anything or answering


@dataclass
class FakeMessage:
    sid: str
    to: str
    from_: str | None
    body: str
    messaging_service_sid: str | None
    status_callback: str | None
    status: str
    created: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    def resource(self, account_sid: str) -> dict[str, Any]:
        date = format_datetime(self.created, usegmt=True)
        return {
            "account_sid": account_sid, "api_version": "2010-04-01", "body": self.body,
            "date_created": date, "date_updated": date, "date_sent": date,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": self.from_, "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0", "num_segments": "1", "price": None, "price_unit": "USD",
            "sid": self.sid, "status": self.status, "to": self.to,
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{self.sid}.json",
            "subresource_uris": {},
        }


class FakeTwilio:
    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[Recorded] = []
        self.messages: list[FakeMessage] = []
        self._create_script: list[Scripted] = []
        self._list_script: list[Scripted] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeTwilio:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"TWILIO_ACCOUNT_SID": self.account_sid, "TWILIO_AUTH_TOKEN": self.auth_token,
                "TWILIO_FROM_NUMBER": FROM_NUMBER, "TWILIO_API_URL": self.url}

    # -- scripting --------------------------------------------------------------------------
    def fail_next(self, n: int = 1, *, code: int | None = None, status: int = 400, message: str = "",
                  retry_after: str | None = None) -> None:
        """The next n creates answer this error (a Twilio error JSON when code is given)."""
        with self._lock:
            self._create_script += [Scripted(status, code, message, retry_after) for _ in range(n)]

    def rate_limit_next(self, n: int = 1, retry_after: str = "7") -> None:
        self.fail_next(n, status=429, code=20429, message="Too Many Requests", retry_after=retry_after)

    def server_error_next(self, n: int = 1) -> None:
        self.fail_next(n, status=500, code=None, message="Internal Server Error")

    def hang_next(self, n: int = 1, seconds: float = 3.0) -> None:
        """The next n creates DO create the message, then answer only after `seconds`."""
        with self._lock:
            self._create_script += [Scripted(201, hang=seconds) for _ in range(n)]

    def drop_next(self, n: int = 1) -> None:
        """The next n creates: the connection is closed with no answer and no message created."""
        with self._lock:
            self._create_script += [Scripted(0, drop=True) for _ in range(n)]

    def fail_next_list(self, n: int = 1, status: int = 500) -> None:
        with self._lock:
            self._list_script += [Scripted(status) for _ in range(n)]

    # -- inspection -------------------------------------------------------------------------
    @property
    def creates(self) -> list[Recorded]:
        """Every create request that was answered with a created message (or a hang)."""
        with self._lock:
            sids = {m.extra.get("request_index") for m in self.messages}
            return [r for i, r in enumerate(self.requests) if i in sids]

    def create_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    def list_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == "GET"]

    def sent(self, to: str | None = None) -> list[FakeMessage]:
        with self._lock:
            return [m for m in self.messages if to is None or m.to == to]

    def message(self, sid: str) -> FakeMessage:
        with self._lock:
            return next(m for m in self.messages if m.sid == sid)

    # -- status callbacks -------------------------------------------------------------------
    def status_params(self, sid: str, status: str, error_code: str | None = None) -> dict[str, str]:
        m = self.message(sid)
        params = {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "MessageSid": sid,
                  "SmsSid": sid, "MessageStatus": status, "SmsStatus": status, "To": m.to,
                  "From": m.from_ or FROM_NUMBER}
        if m.messaging_service_sid:
            params["MessagingServiceSid"] = m.messaging_service_sid
        if error_code:
            params["ErrorCode"] = str(error_code)
        return params

    def sign(self, url: str, params: dict[str, str]) -> str:
        from twilio.request_validator import RequestValidator

        return RequestValidator(self.auth_token).compute_signature(url, params)

    def send_status(self, via, sid: str, status: str, error_code: str | None = None,
                    signature: str | None = None, url: str | None = None):
        """POST a status callback for `sid` the way Twilio would.

        Twilio calls (and signs) the StatusCallback URL given at create. `via` is where the
        request physically goes: a TestClient, or a base URL such as http://127.0.0.1:8000
        (the scheme/host/port of the signed URL are replaced, as a TLS-terminating proxy does).
        """
        params = self.status_params(sid, status, error_code)
        signed_url = url or self.message(sid).status_callback
        assert signed_url, "the message was created without a StatusCallback"
        headers = {"X-Twilio-Signature": signature if signature is not None else self.sign(signed_url, params)}
        path = urlsplit(signed_url).path + (f"?{urlsplit(signed_url).query}" if urlsplit(signed_url).query else "")
        if hasattr(via, "post"):
            return via.post(path, data=params, headers=headers)
        import urllib.error
        import urllib.request

        req = urllib.request.Request(via.rstrip("/") + path, data=urlencode(params).encode(),
                                     headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    # -- request handling (called by the handler threads) ----------------------------------
    def _record(self, method: str, path: str, params: dict[str, str], authorized: bool) -> int:
        with self._lock:
            self.requests.append(Recorded(method, path, params, time.time(), authorized))
            return len(self.requests) - 1

    def _pop(self, script: list[Scripted]) -> Scripted | None:
        with self._lock:
            return script.pop(0) if script else None

    def _create(self, index: int, params: dict[str, str]) -> FakeMessage:
        service = params.get("MessagingServiceSid")
        m = FakeMessage(sid="SM" + secrets.token_hex(16), to=params.get("To", ""), from_=params.get("From"),
                        body=params.get("Body", ""), messaging_service_sid=service,
                        status_callback=params.get("StatusCallback"),
                        status="accepted" if service else "queued",
                        created=datetime.now(UTC).replace(microsecond=0))
        m.extra["request_index"] = index
        with self._lock:
            self.messages.append(m)
        return m

    def _list(self, query: dict[str, str]) -> list[FakeMessage]:
        with self._lock:
            found = list(self.messages)
        if "To" in query:
            found = [m for m in found if m.to == query["To"]]
        if "From" in query:
            found = [m for m in found if m.from_ == query["From"]]
        after = query.get("DateSent>")
        if after:
            bound = datetime.fromisoformat(after.replace("Z", "+00:00"))
            found = [m for m in found if m.created >= bound]
        return sorted(found, key=lambda m: m.created, reverse=True)  # newest first, like Twilio


def _error_body(status: int, code: int | None, message: str) -> dict[str, Any]:
    return {"code": code or status, "message": message or f"HTTP {status}",
            "more_info": f"https://www.twilio.com/docs/errors/{code or status}", "status": status}


class _Handler(BaseHTTPRequestHandler):
    owner: FakeTwilio
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs: 40 ms a request

    def log_message(self, *args):  # quiet
        pass

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except Exception:
            return False
        return user == self.owner.account_sid and password == self.owner.auth_token

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self._headers_buffer.append(b"\r\n" + body)  # headers and body in one write
            self.flush_headers()
        except OSError:
            pass  # the client gave up (a scripted hang)

    def _route(self) -> str | None:
        path = urlsplit(self.path).path
        prefix = f"/2010-04-01/Accounts/{self.owner.account_sid}/Messages.json"
        return path if path == prefix else None

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        params = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        authorized = self._authorized()
        index = self.owner._record("POST", urlsplit(self.path).path, params, authorized)
        if not authorized:
            return self._reply(401, _error_body(401, 20003, "Authenticate"))
        if self._route() is None:
            return self._reply(404, _error_body(404, 20404, "The requested resource was not found"))
        for required in ("To", "Body"):
            if not params.get(required):
                return self._reply(400, _error_body(400, 21604 if required == "To" else 21602,
                                                    f"A '{required}' parameter is required."))
        script = self.owner._pop(self.owner._create_script)
        if script is not None and script.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if script is not None and script.hang is None:
            headers = {"Retry-After": script.retry_after} if script.retry_after else {}
            return self._reply(script.status, _error_body(script.status, script.code, script.message), headers)
        m = self.owner._create(index, params)
        if script is not None and script.hang:
            time.sleep(script.hang)  # created, but the answer comes after the client's timeout
        self._reply(201, m.resource(self.owner.account_sid))

    def do_GET(self):
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        authorized = self._authorized()
        self.owner._record("GET", parts.path, query, authorized)
        if not authorized:
            return self._reply(401, _error_body(401, 20003, "Authenticate"))
        if self._route() is None:
            return self._reply(404, _error_body(404, 20404, "The requested resource was not found"))
        script = self.owner._pop(self.owner._list_script)
        if script is not None:
            return self._reply(script.status, _error_body(script.status, script.code, "scripted list failure"))
        found = self.owner._list(query)
        size = int(query.get("PageSize") or 50)
        page = int(query.get("Page") or 0)
        chunk = found[page * size:(page + 1) * size]
        base = f"/2010-04-01/Accounts/{self.owner.account_sid}/Messages.json"
        keep = {k: v for k, v in query.items() if k not in ("Page", "PageToken")}
        nxt = None
        if (page + 1) * size < len(found):
            nxt = f"{base}?{urlencode({**keep, 'Page': page + 1, 'PageToken': f'PA{page + 1}'})}"
        self._reply(200, {
            "messages": [m.resource(self.owner.account_sid) for m in chunk],
            "page": page, "page_size": size, "start": page * size, "end": page * size + len(chunk),
            "first_page_uri": f"{base}?{urlencode({**keep, 'Page': 0})}",
            "next_page_uri": nxt, "previous_page_uri": None,
            "uri": f"{base}?{parts.query}",
        })


def use_protocol(monkeypatch, tmp_path, *steps: dict) -> None:
    """Point FOLLOWUP_PROTOCOL at a protocol of these steps (defaults: patient SMS at session end).

    The caller's context is built after this (or reloaded: `stack.reload()`).
    """
    import yaml

    base = {"anchor": "session_end", "offset": "0s", "to": "patient", "channel": "sms",
            "template": "mood_checkin", "expects": "mood", "quiet_hours": False}
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump({"quiet_hours": "", "steps": [{**base, **s} for s in steps]}))
    monkeypatch.setenv("FOLLOWUP_PROTOCOL", str(path))


@pytest.fixture
def fake_twilio(monkeypatch, stack):
    """A running fake Twilio; TWILIO_* point at it; the test's context and channels rebuilt."""
    fake = FakeTwilio().start()
    for k, v in fake.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TWILIO_MAX_MPS", "1000")  # tests that pace set their own
    stack.reload()
    yield fake
    fake.stop()
