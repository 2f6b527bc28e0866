-- wrk script: POST /subscribe with a unique address per request.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  n = 0
end
function request()
  n = n + 1
  local body = "email=bench" .. tid .. "x" .. n .. "%40example.org&newsletter=morning-briefing"
  return wrk.format("POST", "/subscribe", {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
