-- wrk script: GET /v1/contacts/{id} for a random tenant and a random contact of it per request.
--
-- Environment (set by bench/run.sh):
--   TESSERA_BENCH_TOKENS    file with one line per tenant: "<index>\t<slug>\t<access token>"
--                           (index = the tenant number i of the id scheme, 1..N)
--   TESSERA_BENCH_CONTACTS  contacts per tenant (M)
--   TESSERA_BENCH_PORT      the server's port, for the Host header "<slug>.localhost:<port>"
--   TESSERA_BENCH_STRICT    "1": also check every response (status exactly 200, body holds the
--                           requested id). Costs load-generator CPU, so run.sh uses it for the
--                           warm-up run only; the measured run relies on wrk's own error counts
--                           (status >= 400, socket errors, timeouts).
--   TESSERA_BENCH_COUNT     "1": count answers by status (200, 429, other) and the 200s per
--                           second of the wall clock (bench/limits.sh: a rate limit's admitted
--                           rate). Not with TESSERA_BENCH_STRICT.
--   TESSERA_BENCH_DELAY_MS  pause this many ms on each connection before each request, so a
--                           few connections offer a bounded rate (bench/limits.sh).
--
-- Ids (see bench/sql/seed_contacts.sql):
--   tenant i  : 00000000-0000-7000-8000-{100000000000 + i}
--   contact c : {10000000 + i}-0000-7000-8000-{100000000000 + c}
--
-- done() prints one line "TESSERA_WRK {json}" that bench/run.sh parses.

local tokens_path = os.getenv("TESSERA_BENCH_TOKENS")
local ncontacts = tonumber(os.getenv("TESSERA_BENCH_CONTACTS") or "")
local port = os.getenv("TESSERA_BENCH_PORT")
local strict = os.getenv("TESSERA_BENCH_STRICT") == "1"
local count = os.getenv("TESSERA_BENCH_COUNT") == "1" and not strict
local delay_ms = tonumber(os.getenv("TESSERA_BENCH_DELAY_MS") or "")

-- Main state: count threads so each can seed its own generator.
local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_no", thread_count)
   table.insert(threads, thread)
end

-- Thread state.
local tenants = {}
local ntenants = 0
checked = 0
bad_status = 0
bad_body = 0
status_200 = 0
status_429 = 0
status_other = 0
ok_by_sec = {}

function init(args)
   if not tokens_path or not ncontacts or not port then
      error("set TESSERA_BENCH_TOKENS, TESSERA_BENCH_CONTACTS and TESSERA_BENCH_PORT")
   end
   for line in io.lines(tokens_path) do
      local index, slug, token = line:match("^(%d+)\t([^\t]+)\t([^\t]+)$")
      if index then
         ntenants = ntenants + 1
         tenants[ntenants] = {
            prefix = string.format("/v1/contacts/%.0f-0000-7000-8000-", 10000000 + tonumber(index)),
            headers = {
               ["Host"] = slug .. ".localhost:" .. port,
               ["Authorization"] = "Bearer " .. token,
               ["Accept"] = "application/json",
            },
         }
      end
   end
   if ntenants == 0 then
      error("no tenant tokens in " .. tokens_path)
   end
   math.randomseed(os.time() * 7919 + (thread_no or 0) * 104729)
   -- LuaJIT's first draws after seeding are poorly spread; discard a few.
   for _ = 1, 10 do math.random() end
end

function request()
   local tenant = tenants[math.random(ntenants)]
   local path = tenant.prefix .. string.format("%.0f", 100000000000 + math.random(ncontacts))
   return wrk.format("GET", path, tenant.headers)
end

if strict then
   -- Defined only in strict mode: wrk parses every response for Lua when response() exists.
   -- wrk keeps one request in flight per connection, but a thread serves many connections, so a
   -- response cannot be matched to its request: check that the body holds a quoted contact id of
   -- the bench scheme (a tenant id starts with 00000000-, so it cannot match).
   function response(status, headers, body)
      checked = checked + 1
      if status ~= 200 then
         bad_status = bad_status + 1
         if bad_status <= 3 then
            io.stderr:write(string.format("non-200 response: %d %s\n", status, tostring(body):sub(1, 200)))
         end
      elseif not body or not body:find('"1%d%d%d%d%d%d%d%-0000%-7000%-8000%-1%d%d%d%d%d%d%d%d%d%d%d"') then
         bad_body = bad_body + 1
         if bad_body <= 3 then
            io.stderr:write("200 without a bench contact id in the body: " .. tostring(body):sub(1, 200) .. "\n")
         end
      end
   end
end

if count then
   -- Defined only in count mode, for the same reason as above.
   function response(status, headers, body)
      if status == 200 then
         status_200 = status_200 + 1
         local now = os.time()
         ok_by_sec[now] = (ok_by_sec[now] or 0) + 1
      elseif status == 429 then
         status_429 = status_429 + 1
      else
         status_other = status_other + 1
         if status_other <= 3 then
            io.stderr:write(string.format("unexpected response: %d %s\n", status, tostring(body):sub(1, 200)))
         end
      end
   end
end

if delay_ms then
   function delay()
      return delay_ms
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   local secs = summary.duration / 1e6
   local sum_checked, sum_bad_status, sum_bad_body = 0, 0, 0
   local s200, s429, sother, by_sec = 0, 0, 0, {}
   for _, t in ipairs(threads) do
      sum_checked = sum_checked + (t:get("checked") or 0)
      sum_bad_status = sum_bad_status + (t:get("bad_status") or 0)
      sum_bad_body = sum_bad_body + (t:get("bad_body") or 0)
      s200 = s200 + (t:get("status_200") or 0)
      s429 = s429 + (t:get("status_429") or 0)
      sother = sother + (t:get("status_other") or 0)
      for sec, n in pairs(t:get("ok_by_sec") or {}) do
         by_sec[sec] = (by_sec[sec] or 0) + n
      end
   end
   local secs_json = {}
   for sec, n in pairs(by_sec) do
      table.insert(secs_json, string.format('"%d":%d', sec, n))
   end
   io.write(string.format(
      'TESSERA_WRK {"requests":%d,"duration_s":%.3f,"rps":%.1f,' ..
      '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f,"mean_us":%.1f,' ..
      '"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
      '"errors_timeout":%d,"strict":%s,"checked":%d,"bad_status":%d,"bad_body":%d,' ..
      '"counted":%s,"status_200":%d,"status_429":%d,"status_other":%d,"ok_by_sec":{%s}}\n',
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean,
      e.status, e.connect, e.read, e.write, e.timeout,
      tostring(strict), sum_checked, sum_bad_status, sum_bad_body,
      tostring(count), s200, s429, sother, table.concat(secs_json, ",")))
end
