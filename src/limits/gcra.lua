-- GCRA, one decision for one cell (after go-redis/redis_rate and rwz/redis-gcra).
--
-- KEYS[1]  the budget's key; its value is the theoretical arrival time (TAT), in microseconds
--          of Redis' own clock, so every replica shares one clock whatever its own says.
-- ARGV[1]  emission interval: microseconds between two cells at the sustained rate (>= 1)
-- ARGV[2]  burst: cells that may arrive at once (>= 1)
--
-- Returns {allowed (1|0), remaining, retry_after_us (-1 when allowed), reset_after_us}: the same
-- numbers the in-process limiter computes, so callers cannot tell the two apart.
--
-- Integers in microseconds rather than redis_rate's float seconds: TIME in microseconds is
-- ~1.7e15, well inside the 2^53 a Lua number holds exactly.

-- Redis before 7 replicates scripts verbatim unless told otherwise, and a script that read TIME
-- may only write when its effects are replicated instead; from 7 on this is the only mode.
if redis.replicate_commands then
  redis.replicate_commands()
end

local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])

local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local tat = tonumber(redis.call("GET", key)) or now
if tat < now then
  tat = now
end

local new_tat = tat + interval
local allow_at = new_tat - interval * burst
local diff = now - allow_at

if diff < 0 then
  -- Refused: nothing is stored, so a refused request costs the budget nothing.
  return {0, 0, allow_at - now, tat - now}
end

local reset_after = new_tat - now
-- The key outlives its TAT by under a second: once it is gone the budget is full again anyway.
redis.call("SET", key, new_tat, "EX", math.ceil(reset_after / 1000000))
return {1, math.floor(diff / interval), -1, reset_after}
