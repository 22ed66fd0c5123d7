-- Workload 6: POST /v1/capacity/usage, batches of RECORDS records with ids
-- never sent before, over ALLOCS random allocations per batch. Each record
-- happened earlier in the current week (the clock is pinned at Wednesday
-- 2026-04-15T06:00:00Z; records fall on Monday 13th to Wednesday 05:59),
-- as a metering pipeline sends usage shortly after it happens.
-- Args: YY SEQ_LO SEQ_HI RECORDS ALLOCS NONCE.
package.path = "bench/lua/?.lua;" .. package.path
local common = require("common")
setup = common.setup
done = common.done

local yy, lo, hi, nonce, records, allocs
local n = 0

function init(args)
  yy = args[1] or "26"
  lo = common.arg(args, 2, 441)
  hi = common.arg(args, 3, lo)
  records = common.arg(args, 4, 1000)
  allocs = common.arg(args, 5, 10)
  nonce = common.arg(args, 6, 0)
  math.randomseed(os.time() + tid)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local ids = {}
  for a = 1, allocs do
    ids[a] = common.minted("ALLOC", yy, math.random(lo, hi))
  end
  local parts = {}
  for i = 1, records do
    parts[i] = string.format(
      '{"id":"b%d-%d-%d-%d","allocation_id":"%s","quantity":%d.%d,"occurred_at":"2026-04-%02dT%02d:%02d:%02dZ"}',
      nonce, tid, n, i, ids[(i % allocs) + 1], math.random(1, 8), math.random(0, 9),
      13 + math.random(0, 1), math.random(0, 23), math.random(0, 59), math.random(0, 59))
  end
  return wrk.format(nil, nil, nil, '{"records":[' .. table.concat(parts, ",") .. ']}')
end
