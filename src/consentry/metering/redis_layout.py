"""How the Redis meter stores counts: keys, expiry, the Lua scripts, and re-sync batches.

Per subject, one hash per hour holds the minutes of the hour (``"0"`` .. ``"59"``) and one hash holds
the hour totals; re-sync batches leave a marker per subject::

    consentry:meter:{org:12}:492034              {"7": 120, "8": 40}
    consentry:meter:{org:12}:hours               {"492033": 5000, "492034": 160}
    consentry:meter:{org:12}:resynced:<batch>    "1"
    consentry:meter:{org:12}:nonce:<digest>      "1"                             a signature nonce, claimed

The braces are a Redis Cluster hash tag: all keys of a subject live on one shard, so each script call
touches one shard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

WINDOW_MINUTES = 1440
"""The rolling window, in minutes (the scripts below use the same figure)."""
WINDOW_SECONDS = WINDOW_MINUTES * 60


def hour_key(prefix: str, subject: str, hour: int) -> str:
    """The Redis key of one hour of one subject."""
    return f"{prefix}:{{{subject}}}:{hour}"


def totals_key(prefix: str, subject: str) -> str:
    """The Redis key of the hour totals of one subject."""
    return f"{prefix}:{{{subject}}}:hours"


def resynced_key(prefix: str, subject: str, batch: str) -> str:
    """The Redis key marking that a re-sync batch was added for one subject."""
    return f"{prefix}:{{{subject}}}:resynced:{batch}"


def nonce_key(prefix: str, subject: str, name: str) -> str:
    """The Redis key claiming a one-time value (a signature nonce) counted for a subject."""
    return f"{prefix}:{{{subject}}}:nonce:{name}"


def window_keys(prefix: str, subject: str, now_minute: int) -> list[str]:
    """The keys of the script: the hour totals, then the hours of the window ending at ``now_minute``."""
    first_hour = (now_minute - WINDOW_MINUTES + 1) // 60
    head = f"{prefix}:{{{subject}}}:"
    return [head + "hours", *(head + str(hour) for hour in range(first_hour, now_minute // 60 + 1))]


def expire_at(minute: int) -> int:
    """When the keys holding ``minute`` may expire: 24 hours after its hour ends (at least an hour on)."""
    hour_end = (minute // 60 + 1) * 3600
    return max(hour_end + WINDOW_SECONDS + 300, int(time.time()) + 3600)


@dataclass
class ResyncBatch:
    """Posts counted in memory during an outage, per subject and minute, added to Redis as one unit.

    ``id`` names the batch in Redis: a batch is re-sent unchanged until Redis confirms it, and a subject
    whose part Redis already holds (the reply was lost, the connection broke halfway) is skipped.
    """

    id: str
    minutes: dict[str, dict[int, int]]

    @property
    def posts(self) -> int:
        """Posts in the batch."""
        return sum(sum(counts.values()) for counts in self.minutes.values())

    def script_calls(self, prefix: str) -> list[tuple[list[str], list[int | str]]]:
        """Keys and arguments of ``RECONCILE_LUA``, one call per subject."""
        now = int(time.time())
        calls: list[tuple[list[str], list[int | str]]] = []
        for subject, counts in self.minutes.items():
            expire = [expire_at(minute) for minute in counts]
            keys = [resynced_key(prefix, subject, self.id), totals_key(prefix, subject)]
            args: list[int | str] = [max(expire), now]
            for (minute, posts), until in zip(counts.items(), expire, strict=True):
                keys.append(hour_key(prefix, subject, minute // 60))
                args += [minute % 60, minute // 60, posts, until]
            calls.append((keys, args))
        return calls


# KEYS[1]: the subject's hour totals (hash: hour -> posts); KEYS[2..]: its hour hashes (minute of the
# hour -> posts) covering minutes [now - 1439, now], oldest first; then, when ARGV[6] is given, the key
# of a one-time value (a signature nonce) to claim until ARGV[6] (epoch seconds) first.
# ARGV: now (epoch minute), posts, limit (-1: none), now (epoch seconds), expire-at (epoch seconds)[,
# claim-until]. Returns {total, accepted (1/0), retry_after seconds (-1: never), reset seconds}, or
# {-1, 0, 0, 0} when the one-time value was already claimed (nothing counted).
CONSUME_LUA = """
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local now_s = tonumber(ARGV[4])
local expire_at = tonumber(ARGV[5])
local first = now - 1439
local first_hour = math.floor(first / 60)
local last_hour = math.floor(now / 60)
local nk = #KEYS - 1
if ARGV[6] then
  nk = nk - 1
  if not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EXAT', ARGV[6]) then return {-1, 0, 0, 0} end
end

-- the minutes of hour i (1 = oldest) inside the window, as {offset, posts}, unsorted
local function minutes(i)
  local lo, hi = 0, 59
  if i == 1 then lo = first % 60 end
  if i == nk then hi = now % 60 end
  local flat = redis.call('HGETALL', KEYS[i + 1])
  local got = {}
  for j = 1, #flat, 2 do
    local off = tonumber(flat[j])
    if off >= lo and off <= hi then got[#got + 1] = {off, tonumber(flat[j + 1])} end
  end
  return got
end

local function sum_and_min(list)
  local s, m = 0, nil
  for _, e in ipairs(list) do
    s = s + e[2]
    if e[2] > 0 and (m == nil or e[1] < m) then m = e[1] end
  end
  return s, m
end

local totals = {}
local head = minutes(1)
local tail = minutes(nk)
local head_sum, head_min = sum_and_min(head)
local tail_sum, tail_min = sum_and_min(tail)
totals[1], totals[nk] = head_sum, tail_sum
local total = head_sum + tail_sum
if nk > 2 then
  local fields = {}
  for h = first_hour + 1, last_hour - 1 do fields[#fields + 1] = h end
  local middle = redis.call('HMGET', KEYS[1], unpack(fields))
  for i = 2, nk - 1 do
    local v = tonumber(middle[i - 1]) or 0
    totals[i] = v
    total = total + v
  end
end

local function seconds_until_gone(minute)
  if minute == nil then return 0 end
  local s = math.ceil((minute + 1440) * 60 - now_s)
  if s < 1 then s = 1 end
  return s
end

local function oldest()
  if head_min ~= nil then return first_hour * 60 + head_min end
  for i = 2, nk - 1 do
    if totals[i] > 0 then
      local _, m = sum_and_min(minutes(i))
      if m ~= nil then return (first_hour + i - 1) * 60 + m end
    end
  end
  if tail_min ~= nil then return last_hour * 60 + tail_min end
  return nil
end

if limit >= 0 and total + n > limit then
  local retry = -1
  if n <= limit then
    local excess = total + n - limit
    local removed = 0
    for i = 1, nk do
      if totals[i] > 0 and retry < 0 then
        local list = minutes(i)
        table.sort(list, function(a, b) return a[1] < b[1] end)
        for _, e in ipairs(list) do
          removed = removed + e[2]
          if removed >= excess then
            retry = seconds_until_gone((first_hour + i - 1) * 60 + e[1])
            break
          end
        end
      end
    end
  end
  return {total, 0, retry, seconds_until_gone(oldest())}
end

if n > 0 then
  local off = now % 60
  -- expiry and pruning only change with the minute or the hour: set them on its first write
  if redis.call('HINCRBY', KEYS[nk + 1], off, n) == n then
    redis.call('EXPIREAT', KEYS[nk + 1], expire_at)
  end
  if redis.call('HINCRBY', KEYS[1], last_hour, n) == n then
    redis.call('HDEL', KEYS[1], first_hour - 1)
    redis.call('EXPIREAT', KEYS[1], expire_at)
  end
  total = total + n
  if tail_min == nil or off < tail_min then tail_min = off end
end
return {total, 1, 0, seconds_until_gone(oldest())}
"""

# Adds one subject's posts counted in memory during an outage, exactly once per batch.
# KEYS[1]: the batch's marker for this subject; KEYS[2]: the subject's hour totals; KEYS[3..]: the hour
# hash of each entry. ARGV[1]: the marker's expire-at; ARGV[2]: now (epoch seconds); then per entry:
# minute of the hour, epoch hour, posts, expire-at. Returns 1 when added, 0 when the batch already was.
RECONCILE_LUA = """
if not redis.call('SET', KEYS[1], '1', 'NX') then return 0 end
redis.call('EXPIREAT', KEYS[1], ARGV[1])
local now_s = tonumber(ARGV[2])
local function keep_until(key, at)
  local ttl = redis.call('TTL', key)
  if ttl < 0 or ttl < at - now_s then redis.call('EXPIREAT', key, at) end
end
for i = 3, #KEYS do
  local j = 3 + (i - 3) * 4
  local at = tonumber(ARGV[j + 3])
  redis.call('HINCRBY', KEYS[i], ARGV[j], ARGV[j + 2])
  keep_until(KEYS[i], at)
  redis.call('HINCRBY', KEYS[2], ARGV[j + 1], ARGV[j + 2])
  keep_until(KEYS[2], at)
end
return 1
"""
