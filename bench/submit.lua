-- wrk script for bench/submit_vs_bare.py: POST {"text":"hello"} to a different banner on every request,
-- so each submit finds its banner free (201) instead of busy (409).
-- Arguments (after --): first banner number, how many banners this run may use, number of wrk threads,
-- and optionally an API key sent on every request (`Authorization: Bearer <key>`).
-- Banner n is "b" .. n padded to 7 digits, as bench/_fleet.py seeds them.

local threads = {}
local body = '{"text":"hello"}'
local headers = { ["Content-Type"] = "application/json" }

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  first = tonumber(args[1]) or 0
  span = tonumber(args[2]) or 1000000
  nthreads = tonumber(args[3]) or 1
  counter = 0
  if args[4] and args[4] ~= "" then
    headers["Authorization"] = "Bearer " .. args[4]
  end
end

function request()
  local n = first + (tid + counter * nthreads) % span
  counter = counter + 1
  return wrk.format("POST", string.format("/api/v1/banners/b%07d/message", n), headers, body)
end

function done(summary, latency, requests)
  local used = 0
  for _, thread in ipairs(threads) do
    used = used + thread:get("counter")
  end
  io.write(string.format("ids_used %d\n", used))
end
