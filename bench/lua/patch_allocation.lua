-- Workload 4: PATCH /v1/capacity/allocations/{id} with an immediate change
-- of commitment, on a random allocation of a pool with room.
-- Args: YY SEQ_LO SEQ_HI.
package.path = "bench/lua/?.lua;" .. package.path
local common = require("common")
setup = common.setup
done = common.done

local yy, lo, hi

function init(args)
  yy = args[1] or "26"
  lo = common.arg(args, 2, 441)
  hi = common.arg(args, 3, lo)
  math.randomseed(os.time() + tid)
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local path = "/v1/capacity/allocations/" .. common.minted("ALLOC", yy, math.random(lo, hi))
  local body = string.format(
    '{"committed_per_week": %d, "effective_immediately": true, "reason": "bench"}',
    math.random(1, 40))
  return wrk.format("PATCH", path, nil, body)
end
