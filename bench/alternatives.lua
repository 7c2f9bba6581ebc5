-- wrk script for bench/alternatives.py: POST {"text":"hello"} to banners first .. first+span-1 in turn
-- (uniform: many banners, each free again by the time it comes round; hot: a few banners, many writers),
-- and keep, for every 201, the banner id, shown_at, expires_at and version from its body.
-- Arguments (after --): first banner number, number of banners, where in them to start, number of wrk
-- threads, output file.
-- done() writes "status CODE COUNT" and "accepted ID SHOWN_AT EXPIRES_AT VERSION" lines to the file.

local threads = {}
local body = '{"text":"hello"}'
local headers = { ["Content-Type"] = "application/json" }

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  first = tonumber(args[1]) or 0
  span = tonumber(args[2]) or 1
  offset = tonumber(args[3]) or 0
  nthreads = tonumber(args[4]) or 1
  out_path = args[5]
  counter = 0
  statuses = {}
  accepted = {}
end

function request()
  local n = first + (offset + tid + counter * nthreads) % span
  counter = counter + 1
  return wrk.format("POST", string.format("/api/v1/banners/b%07d/message", n), headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 201 then
    -- The banner's own "id" comes first in every server's answer; the message's "id" later.
    accepted[#accepted + 1] = string.format(
      "%s %s %s %s",
      body:match('"id":"([^"]+)"') or "?",
      body:match('"shown_at":"([^"]+)"') or "?",
      body:match('"expires_at":"([^"]+)"') or "?",
      body:match('"version":(%d+)') or "?"
    )
  end
end

function done(summary, latency, requests)
  local out = assert(io.open(threads[1]:get("out_path"), "w"))
  local used = 0
  for _, thread in ipairs(threads) do
    used = used + thread:get("counter")
    for status, n in pairs(thread:get("statuses")) do
      out:write(string.format("status %d %d\n", status, n))
    end
    for _, line in ipairs(thread:get("accepted")) do
      out:write("accepted ", line, "\n")
    end
  end
  out:close()
  io.write(string.format("ids_used %d\n", used))
end
