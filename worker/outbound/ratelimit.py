"""One global send rate (TWILIO_MAX_MPS) across every worker thread, process and machine.

Celery's ``rate_limit`` is per worker, so N workers would send N times too fast. Instead each
send first takes a *slot* from a shared schedule:

* **Redis** (BROKER_URL is ``redis://``, ``rediss://`` or ``redis+socket://``): one key,
  ``aftercare:ratelimit:<name>``, holds the next free slot (microseconds, on Redis's own
  clock, so the machines' clocks do not matter). An atomic Lua script hands out
  ``max(next_free, now)`` and moves ``next_free`` one interval on; the caller sleeps until
  its slot. One round trip, no polling, first come first served.
* **In process** (the embedded broker, or anything else): the same schedule under a lock.

Why slots one interval apart (a token bucket with a capacity of one token) rather than a
bigger burst: with a burst of *b* tokens, a one-second window could see ``b + rate`` sends.
Slots spaced ``1 / rate`` apart put at most ``rate`` sends in any one-second window.
The schedule also runs at HEADROOM (97 %) of the rate: between taking a slot and the request
reaching Twilio there are a few database round trips whose length varies, and that jitter
must not squeeze two sends closer than the carrier allows.

A message over the rate waits for its slot; it is never dropped. A caller that takes a slot
and then does not send just leaves a gap (conservative, never too fast).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import redis

from ..core.config import Settings

log = logging.getLogger("aftercare.ratelimit")

HEADROOM = 0.97
KEY_PREFIX = "aftercare:ratelimit:"

# KEYS[1] next-free-slot key; ARGV[1] interval in microseconds. Returns the wait in microseconds.
_LUA_TAKE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(nxt, now)
local ttl_ms = math.floor((slot + interval - now) / 1000) + 60000
redis.call('SET', KEYS[1], string.format('%.0f', slot + interval), 'PX', ttl_ms)
return string.format('%.0f', slot - now)
"""


class RateLimiterUnavailable(RuntimeError):
    """The shared limiter (Redis) cannot be reached: do not send unpaced."""


class RateLimiter:
    rate: float

    def reserve(self) -> float:
        """Take the next slot; return how many seconds to wait for it."""
        raise NotImplementedError

    def acquire(self) -> float:
        """Block until this caller may send. Returns the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)

    _sleep: Callable[[float], None] = staticmethod(time.sleep)


def _interval(rate: float) -> float:
    if rate <= 0:
        raise ValueError("rate must be positive")
    return 1.0 / (rate * HEADROOM)


class LocalRateLimiter(RateLimiter):
    """Thread-safe schedule for one process (embedded mode)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.interval = _interval(rate)
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        with self._lock:
            now = self._clock()
            slot = max(self._next, now)
            self._next = slot + self.interval
            return slot - now


class RedisRateLimiter(RateLimiter):
    """The schedule in Redis, shared by every process that points at the same server."""

    def __init__(self, url: str, rate: float, name: str = "sms", client=None):
        self.rate = rate
        self.interval = _interval(rate)
        self.key = KEY_PREFIX + name
        self._url = url
        self._client = client or redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._script = self._client.register_script(_LUA_TAKE_SLOT)

    def reserve(self) -> float:
        last: Exception | None = None
        for attempt in range(3):
            try:
                micros = int(self._script(keys=[self.key], args=[int(self.interval * 1_000_000)]))
                return micros / 1_000_000
            except redis.RedisError as exc:
                last = exc
                time.sleep(0.2 * (attempt + 1))
        raise RateLimiterUnavailable(f"rate limiter: Redis unreachable ({type(last).__name__})") from last


def _redis_url(broker_url: str) -> str | None:
    scheme = urlsplit(broker_url).scheme
    if scheme in ("redis", "rediss"):
        return broker_url
    if scheme == "redis+socket":
        return "unix://" + broker_url[len("redis+socket://") :]
    return None


def limiter_for(broker_url: str, rate: float, name: str = "sms") -> RateLimiter:
    """Redis-backed when the broker is Redis, else an in-process schedule.

    Built once per process by its composition root (`runtime.build_outbound`): every sender in
    the process must share the one in-process schedule.
    """
    url = _redis_url(broker_url or "")
    if url:
        return RedisRateLimiter(url, rate, name)
    if broker_url and urlsplit(broker_url).scheme not in ("memory", "sqla+sqlite", "filesystem"):
        log.warning("BROKER_URL is not Redis: the %s send rate is enforced per process only", name)
    return LocalRateLimiter(rate)


def sms_limiter(settings: Settings) -> RateLimiter:
    return limiter_for(settings.broker_url, settings.twilio_max_mps, "sms")
