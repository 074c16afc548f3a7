"""SMS through Twilio's Messages API with the official SDK (``twilio.rest.Client``).

Errors are classified here, so the dispatcher only sees outcomes:

* ``21610`` (the recipient texted STOP to our sender) -> ``opted_out``.
* Other 4xx with a Twilio code (``21211`` invalid number, ``21408`` region not enabled,
  ``21612`` cannot route, ``21614`` not a mobile number, ...) -> ``failed`` with a readable
  reason and the code: retrying cannot help, a clinician must look.
* HTTP 429 / code ``20429``, 5xx, and a connection that never got through -> ``retry``
  (Retry-After honoured). So is 401 / ``20003``: wrong credentials are the clinic's
  configuration, not the message, and must not fail every message for good.

**The ambiguous send.** Twilio has no idempotency key. If the connection times out or is
reset *after* the request went out, Twilio may or may not have created the message. Such an
attempt returns ``retry`` with ``error_code="ambiguous"``. The next attempt for that row
(``last_error_code == "ambiguous"``), and ``reconcile()`` for a row a dead worker left in
``sending``, first read the recipient's recent messages from Twilio: one with the same body
(links aside: every render signs fresh, timestamped link tokens),
created no earlier than the row could have been sent (``scheduled_for`` / ``created_at``
minus a clock margin) and whose sid no other row already owns, *is* this message -> ``sent``
with that sid, nothing is created. Only when the listing answers and shows no such message
is the message created (again). If the listing itself fails, the attempt is retried later,
still marked ambiguous, and nothing is created.

The listing filters by ``To`` (and ``From``) only, newest first, and applies the time bound
itself: Twilio's ``DateSent`` filter leaves out messages still queued (no send date yet),
which are exactly the ones an ambiguous create may have left behind.

Throughput: ``wait_turn()`` takes a slot from the global limiter (``worker.outbound.ratelimit``),
TWILIO_MAX_MPS across all workers. Logs carry message ids and masked numbers only; the SDK's
own request logging (which prints query strings, i.e. phone numbers) is silenced.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import requests
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from ..core.config import Settings
from ..core.phones import mask_address
from .base import Channel, OutboundMessage, Outcome, Pacer, Reconciled, SendResult, SidOwners

log = logging.getLogger("aftercare.sms")

HTTP_TIMEOUT = 15.0  # seconds, connect and read: a hung request must not hold a worker
CLOCK_MARGIN = timedelta(minutes=2)  # our clock vs Twilio's, when bounding the listing
LIST_LIMIT = 50
SETTLE_MAX = 0.25  # seconds: see wait_turn
AMBIGUOUS = "ambiguous"
STATUS_PATH = "/webhooks/twilio/status"

# The SDK logs every request's URL and query string (phone numbers) at INFO: keep it quiet.
_sdk_log = logging.getLogger("aftercare.sms.sdk")
_sdk_log.setLevel(logging.WARNING)

_QUERY_NUMBER = re.compile(r"((?:To|From)=)(?:%2B|\+)?\d+")


class _RedactNumbers(logging.Filter):
    """urllib3 logs request lines at DEBUG; the Messages list query carries the recipient's number."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - never break logging
            return True
        if "To=" in text or "From=" in text:
            record.msg, record.args = _QUERY_NUMBER.sub(r"\1[redacted]", text), ()
        return True


_REDACT = _RedactNumbers()
logging.getLogger("urllib3.connectionpool").addFilter(_REDACT)

REASONS = {
    21211: "invalid 'To' phone number",
    21408: "SMS to this region is not enabled on the Twilio account",
    21610: "the recipient has unsubscribed (replied STOP)",
    21612: "Twilio cannot route to this number (unreachable carrier or unsupported destination)",
    21614: "the number is not a mobile number (cannot receive SMS)",
    21606: "the 'From' number cannot send SMS",
    21608: "trial account: the number is not verified",
    21617: "the message body is too long",
    20003: "Twilio authentication failed (check TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN)",
    20404: "Twilio resource not found (check TWILIO_ACCOUNT_SID / TWILIO_API_URL)",
}
_DIGITS = re.compile(r"\+?\d[\d\s().-]{6,}\d")


class _HttpClient(TwilioHttpClient):
    """The SDK's client, remembering each thread's last response (for Retry-After)."""

    def __init__(self, timeout: float):
        super().__init__(timeout=timeout, logger=_sdk_log)
        self._local = threading.local()

    def request(self, *args, **kwargs):
        self._local.last = None
        response = super().request(*args, **kwargs)
        self._local.last = response
        return response

    def last_headers(self) -> dict:
        last = getattr(self._local, "last", None)
        return dict(last.headers) if last is not None and last.headers else {}


def _retry_after(headers: dict) -> float | None:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return max(float(value), 0.0)
            except (TypeError, ValueError):
                return None  # an HTTP date: the dispatcher's backoff is long enough
    return None


def _never_reached(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach Twilio (connect failed)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        return isinstance(reason, (NewConnectionError, NameResolutionError, ConnectionRefusedError))
    return False


_URL = re.compile(r"https?://\S+")


def same_text(sent: str | None, ours: str | None) -> bool:
    """The same message, allowing for links: each attempt renders fresh signed (timestamped) tokens."""
    if sent is None or ours is None:
        return False
    return sent == ours or _URL.sub("<link>", sent) == _URL.sub("<link>", ours)


def _utc(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class TwilioSmsChannel(Channel):
    name = "sms"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        status_callback: str | None = None,
        api_url: str | None = None,
        limiter: Pacer | None = None,
        timeout: float | None = None,
        owned_elsewhere: SidOwners | None = None,
    ):
        if not (from_number or messaging_service_sid):
            raise ValueError("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID is required")
        self.http = _HttpClient(timeout=timeout or HTTP_TIMEOUT)
        self.client = Client(account_sid, auth_token, http_client=self.http)
        if api_url:
            # Every Messages API URL (create, list, next pages) is built from this domain's
            # base_url; edge/region rewriting would send it back to *.twilio.com.
            self.client.api.base_url = api_url.rstrip("/")
            self.client.edge = None
            self.client.region = None
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback = status_callback
        self.limiter = limiter
        self.owned_elsewhere = owned_elsewhere
        self._pace = threading.local()

    @classmethod
    def from_settings(
        cls, settings: Settings, limiter: Pacer | None = None, owned_elsewhere: SidOwners | None = None
    ) -> TwilioSmsChannel:
        return cls(
            settings.twilio_account_sid or "",
            settings.twilio_auth_token or "",
            from_number=settings.twilio_from_number,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            status_callback=settings.public_base_url + STATUS_PATH,
            api_url=settings.twilio_api_url,
            limiter=limiter,
            owned_elsewhere=owned_elsewhere,
        )

    # -- Channel ----------------------------------------------------------------------------
    def wait_turn(self) -> None:
        """Take a slot from the global schedule; the create then leaves a fixed delay after it.

        Between the slot and the HTTP request the dispatcher claims and renders the row
        (database round trips of varying length, longer on a cold process). Holding the
        request until slot + SETTLE turns that variable delay into a constant one, so sends
        reach Twilio as evenly spaced as their slots.
        """
        if self.limiter is None:
            return
        self.limiter.acquire()
        settle = min(SETTLE_MAX, 0.5 / self.limiter.rate)
        self._pace.release_at = time.monotonic() + settle

    def _hold_until_release(self) -> None:
        release_at = getattr(self._pace, "release_at", None)
        self._pace.release_at = None
        if release_at is not None:
            delay = release_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def send(self, message: OutboundMessage) -> SendResult:
        if message.last_error_code == AMBIGUOUS:
            state, sid = self._find_existing(message)
            if state == Reconciled.found:
                log.info("message %s: the earlier ambiguous attempt did reach Twilio; not sending again", message.id)
                return SendResult.sent(sid or "")
            if state == Reconciled.unknown:
                return SendResult.retry(
                    "the previous attempt may have reached Twilio and Twilio cannot be asked "
                    "right now; not sending again yet",
                    code=AMBIGUOUS,
                )
        return self._create(message)

    def reconcile(self, message: OutboundMessage) -> tuple[Reconciled, str | None]:
        if not message.body:
            return Reconciled.not_found, None  # never rendered, so never handed to Twilio
        return self._find_existing(message)

    # -- internals --------------------------------------------------------------------------
    def _create(self, message: OutboundMessage) -> SendResult:
        kwargs: dict[str, str | None] = {"to": message.to, "body": message.body}
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        else:
            kwargs["from_"] = self.from_number
        if self.status_callback:
            kwargs["status_callback"] = self.status_callback
        self._hold_until_release()
        try:
            created = self.client.messages.create(**kwargs)
        except (TwilioRestException, TwilioServiceException) as exc:
            return self._classify(message, exc)
        except requests.RequestException as exc:
            if _never_reached(exc):
                log.warning("message %s: Twilio unreachable (%s)", message.id, type(exc).__name__)
                return SendResult.retry(f"could not connect to Twilio ({type(exc).__name__})", code="connect")
            log.warning(
                "message %s to %s: no answer from Twilio after sending (%s); outcome unknown",
                message.id,
                mask_address(message.to),
                type(exc).__name__,
            )
            return SendResult.retry(
                f"no answer from Twilio after the request was sent ({type(exc).__name__}); "
                "it will be checked before any resend",
                code=AMBIGUOUS,
            )
        return SendResult.sent(created.sid)

    def _classify(self, message: OutboundMessage, exc) -> SendResult:
        status = int(getattr(exc, "status", 0) or 0)
        code = getattr(exc, "code", None)
        try:
            code = int(code) if code is not None else None
        except (TypeError, ValueError):
            code = None
        code_text = str(code) if code is not None else str(status)
        if code == 21610:
            return SendResult(Outcome.opted_out, error=REASONS[21610], error_code="21610")
        if status == 429 or code == 20429:
            after = _retry_after(self.http.last_headers())
            return SendResult.retry(
                "Twilio is rate limiting (429 Too Many Requests)", code=code_text, retry_after=after
            )
        if status == 401 or code == 20003:
            # Our credentials, not the message: retry (with backoff) so a fixed config still sends it.
            log.error("Twilio rejected the credentials (401): check TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN")
            return SendResult.retry(REASONS[20003], code="20003")
        if status >= 500 or status == 0:
            after = _retry_after(self.http.last_headers())
            if status in (502, 504):  # a gateway lost Twilio's answer: it may have been created
                return SendResult.retry(
                    f"Twilio gateway error {status}; it will be checked before any resend",
                    code=AMBIGUOUS,
                    retry_after=after,
                )
            return SendResult.retry(f"Twilio server error {status}", code=code_text, retry_after=after)
        reason = REASONS.get(code) if code is not None else None
        if reason is None:
            detail = getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", "") or ""
            detail = _DIGITS.sub("[number]", str(detail)).removeprefix("Unable to create record: ")
            reason = detail or f"HTTP {status}"
        log.warning("message %s to %s: Twilio refused it (code %s)", message.id, mask_address(message.to), code_text)
        return SendResult.failed(f"Twilio error {code_text}: {reason}", code=code_text)

    def _not_before(self, message: OutboundMessage) -> datetime | None:
        """The earliest moment this row can have been handed to Twilio (minus clock margin)."""
        bounds = [w.astimezone(UTC) for w in (message.created_at, message.scheduled_for) if w is not None]
        return max(bounds) - CLOCK_MARGIN if bounds else None

    def _owned_elsewhere(self, message: OutboundMessage, sids: list[str]) -> set[str]:
        """Sids that already belong to other rows (the same text sent earlier, e.g. a clarify)."""
        if not sids or self.owned_elsewhere is None:
            return set()
        return self.owned_elsewhere(message.id, sids)

    def _find_existing(self, message: OutboundMessage) -> tuple[Reconciled, str | None]:
        """Does Twilio already hold this message? found / not_found / unknown (cannot ask)."""
        not_before = self._not_before(message)
        kwargs = {"to": message.to, "limit": LIST_LIMIT}
        if self.from_number and not self.messaging_service_sid:
            kwargs["from_"] = self.from_number
        try:
            recent = self.client.messages.list(**kwargs)
            candidates = []
            for m in recent:
                created = _utc(m.date_created)
                if not same_text(m.body, message.body):
                    continue
                if not_before is not None and created is not None and created < not_before:
                    continue
                candidates.append((created or datetime.min.replace(tzinfo=UTC), m.sid))
            taken = self._owned_elsewhere(message, [sid for _, sid in candidates])
        except (TwilioRestException, TwilioServiceException, requests.RequestException) as exc:
            log.warning(
                "message %s: cannot list recent messages to %s (%s)",
                message.id,
                mask_address(message.to),
                type(exc).__name__,
            )
            return Reconciled.unknown, None
        except Exception:
            log.exception("message %s: reconciling with Twilio failed", message.id)
            return Reconciled.unknown, None
        mine = sorted((c for c in candidates if c[1] not in taken), key=lambda c: c[0])
        if mine:
            return Reconciled.found, mine[0][1]
        return Reconciled.not_found, None
