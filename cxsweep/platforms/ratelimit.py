"""One request rate per tenant, shared by every worker on every machine.

GCRA in a Lua script, so the check-and-reserve is atomic in Redis and the time is
Redis's own clock (workers' clocks may disagree). A caller reserves the next free slot
and is told how long to wait for it. A short wait is slept out in place, because that
is what pacing means. A long one is refused without a reservation, so that the task
can come back later (``NotYet``) instead of holding a worker slot.

A page read goes ahead of the writes queued for their slots (``acquire(priority=True)``):
it takes the first free moment and pushes the queue back by one slot, so the rate over
time is the same. A run's re-read of its list, page after page, is what its writes wait
for (``tasks.recheck`` sends a chunk once it has judged it): behind 32 writer threads'
reservations, each page waited a third of a second at 100 requests/s.

A 429 that still arrives means the platform's limit is lower than ours, or that others
share the tenant. The server knows best: the rate drops by a quarter at once, every
caller pauses for its ``Retry-After``, and the rate climbs back over a minute.
"""

from __future__ import annotations

import hashlib
import time

import redis

from cxsweep.runs import keys

# KEYS[1] state hash.
# ARGV: rate (req/s), burst (requests), max_wait (s), recovery (s), priority (1|0).
# A priority caller starts at the first free moment (a pause after a 429 still holds)
# instead of after every reservation made, and the next reservation moves one slot
# later: it borrows a queued caller's slot, which the queue pays back at once. Priority
# callers among themselves keep to half the rate ('ptat').
# Returns {wait_ms, reserved (1|0)}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_wait, recovery = tonumber(ARGV[3]) * 1000, tonumber(ARGV[4]) * 1000
local state = redis.call('HMGET', KEYS[1], 'tat', 'factor', 'since', 'blocked')
local tat = tonumber(state[1]) or now
local factor = tonumber(state[2]) or 1
local since = tonumber(state[3]) or now
local blocked = tonumber(state[4]) or 0
if factor < 1 then
  factor = math.min(1, factor + (1 - factor) * (now - since) / recovery)
end
local interval = 1000 / (rate * factor)
local start = math.max(tat, now, blocked)
if ARGV[5] == '1' and start - now <= max_wait then
  -- The priority lane has a rate of its own, half the tenant's and no burst: page
  -- reads may not crowd the writes out, and the slots they borrow stay few.
  local ptat = tonumber(redis.call('HGET', KEYS[1], 'ptat')) or now
  local go = math.max(now, blocked, ptat)
  if go - now <= max_wait then
    redis.call('HSET', KEYS[1], 'tat', start + interval, 'ptat', go + 2 * interval)
    redis.call('PEXPIRE', KEYS[1], math.ceil(start + interval - now) + 60000)
    return {math.ceil(go - now), 1}
  end
end
local wait = start - now - (burst - 1) * interval
if wait < 0 then wait = 0 end
if wait > max_wait then
  return {math.ceil(wait), 0}
end
redis.call('HSET', KEYS[1], 'tat', start + interval)
redis.call('PEXPIRE', KEYS[1], math.ceil(start + interval - now) + 60000)
return {math.ceil(wait), 1}
"""

# ARGV: retry_after (s), floor factor. Slows the rate and pauses everyone, once per
# episode: the 429s of requests already in flight belong to the same episode and must
# not each cut the rate again (ten of them would take it to the floor).
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'factor', 'blocked')
local factor = tonumber(state[1]) or 1
local current = tonumber(state[2]) or 0
if now < current then
  return tostring(factor)
end
factor = math.max(tonumber(ARGV[2]), factor * 0.75)
local blocked = now + tonumber(ARGV[1]) * 1000
redis.call('HSET', KEYS[1], 'factor', factor, 'since', now, 'blocked', blocked)
redis.call('PEXPIRE', KEYS[1], 3600000)
return tostring(factor)
"""


class RateLimiter:
    """``acquire()`` before every request: returns once a slot is ours, or raises."""

    def __init__(
        self,
        client: redis.Redis,
        tenant: str,
        rate: float,
        burst: int | None = None,
        *,
        max_wait: float = 2.0,
        recovery: float = 60.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (use no limiter for no limit)")
        self.rate = rate
        # Half a second's worth by default: a burst as large as the tenant's own bucket
        # puts client and server in lock-step, where any jitter is a 429.
        self.burst = max(1, burst if burst is not None else int(rate // 2))
        self.max_wait = max_wait
        self.recovery = recovery
        digest = hashlib.sha256(tenant.encode()).hexdigest()[:16]
        self.key = keys.rate_bucket(digest)
        self._acquire = client.register_script(_ACQUIRE)
        self._penalize = client.register_script(_PENALIZE)

    def reserve(self, priority: bool = False) -> tuple[float, bool]:
        """(seconds to wait, whether a slot was reserved for us)."""
        wait_ms, reserved = self._acquire(
            keys=[self.key],
            args=[self.rate, self.burst, self.max_wait, self.recovery, int(priority)],
        )
        return int(wait_ms) / 1000.0, bool(reserved)

    def acquire(self, priority: bool = False) -> float:
        """Wait for our slot; returns the seconds waited. Raises ``NotYet`` when the wait
        would be longer than ``max_wait``: the caller should come back later. With
        ``priority`` the slot is the first free moment, ahead of those queued."""
        from cxsweep.errors import NotYet

        wait, reserved = self.reserve(priority)
        if not reserved:
            raise NotYet(f"the shared rate limit asks to wait {wait:.1f}s", retry_after=wait)
        if wait > 0:
            time.sleep(wait)
        return wait

    def penalize(self, retry_after: float | None) -> float:
        """A 429 arrived: slow down for everyone. Returns the new rate factor."""
        return float(self._penalize(keys=[self.key], args=[retry_after or 1.0, 0.1]))
