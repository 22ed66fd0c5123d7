-- Shared by every workload script (wrk 4.x, LuaJIT). bench/run.sh runs wrk
-- from the repository root, so scripts load this with
--   package.path = "bench/lua/?.lua;" .. package.path
--   local common = require("common")
--
-- setup() numbers the threads (each wrk thread has its own Lua state, so
-- ids made from `tid` and a per-thread counter are unique in one wrk run;
-- bench/run.sh adds a nonce per run). done() prints one machine-readable
-- line that bench/run.sh parses.
local M = {}

local threads = 0

function M.setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d status_errors=%d socket_errors=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end

-- The arguments after `--` on the wrk command line, as numbers where they are.
function M.arg(args, i, default)
  local v = args[i]
  if v == nil or v == "" then return default end
  return tonumber(v) or v
end

-- A minted id as the service formats it: PREFIX-YY-NNNNNN.
function M.minted(prefix, yy, seq)
  return string.format("%s-%s-%06d", prefix, yy, seq)
end

return M
