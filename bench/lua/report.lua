-- A fixed request (the URL and headers given to wrk); only reports.
package.path = "bench/lua/?.lua;" .. package.path
local common = require("common")
setup = common.setup
done = common.done
