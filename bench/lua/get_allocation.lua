-- Workload 2: GET /v1/capacity/allocations/{id} for a random allocation.
-- Args: YY SEQ_LO SEQ_HI (allocation sequence numbers).
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
end

function request()
  return wrk.format("GET", "/v1/capacity/allocations/" .. common.minted("ALLOC", yy, math.random(lo, hi)))
end
