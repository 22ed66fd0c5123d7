-- Workload 3: POST /v1/capacity/allocations on a random pool with room,
-- each for a service line never seen before (so each also registers it).
-- Args: YY POOL_SEQ_LO POOL_SEQ_HI NONCE.
package.path = "bench/lua/?.lua;" .. package.path
local common = require("common")
setup = common.setup
done = common.done

local yy, lo, hi, nonce
local n = 0

function init(args)
  yy = args[1] or "26"
  lo = common.arg(args, 2, 199)
  hi = common.arg(args, 3, lo)
  nonce = common.arg(args, 4, 0) % 1000
  math.randomseed(os.time() + tid)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  -- LIN-YY- then 14 digits: nonce, thread, counter; unique in a dataset.
  local line = string.format("LIN-%s-%03d%02d%09d", yy, nonce, tid, n)
  local body = string.format(
    '{"capacity_pool_id":"%s","service_line_id":"%s","committed":1}',
    common.minted("CAP", yy, math.random(lo, hi)), line)
  return wrk.format(nil, nil, nil, body)
end
