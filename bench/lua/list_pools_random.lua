-- Workload 1b: GET /v1/capacity?workspace_id=… for a random workspace.
-- Args: YY WS_LO WS_HI (workspace numbers, WS-YY-NNNNNN).
package.path = "bench/lua/?.lua;" .. package.path
local common = require("common")
setup = common.setup
done = common.done

local yy, lo, hi

function init(args)
  yy = args[1] or "26"
  lo = common.arg(args, 2, 21)
  hi = common.arg(args, 3, lo)
  math.randomseed(os.time() + tid)
end

function request()
  local ws = common.minted("WS", yy, math.random(lo, hi))
  return wrk.format("GET", "/v1/capacity?workspace_id=" .. ws)
end
