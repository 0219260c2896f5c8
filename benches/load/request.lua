-- One request shape for every target, driven by the environment (set by run.sh):
--   WRK_METHOD   GET or POST (default GET)
--   WRK_HEADERS  "Name: value|Name: value"
--   WRK_BODY     the request body; "{n}" is replaced by a counter unique to this run
--   WRK_NONCE    makes the counter unique across runs (e.g. emails of creates)
-- done() prints one machine-readable line that run.sh parses.

local method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
local nonce = os.getenv("WRK_NONCE") or "0"
local headers = {}
for pair in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^|]+") do
  local k, v = string.match(pair, "^%s*([^:]+):%s*(.*)$")
  if k then headers[k] = v end
end
if body then headers["Content-Type"] = headers["Content-Type"] or "application/json" end

local counting = body ~= nil and string.find(body, "{n}", 1, true) ~= nil
local fixed = nil
local n = 0

local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  if not counting then
    fixed = wrk.format(method, nil, headers, body)
  end
end

function request()
  if fixed then return fixed end
  n = n + 1
  local b = string.gsub(body, "{n}", nonce .. "-" .. (tid or 0) .. "-" .. n)
  return wrk.format(method, nil, headers, b)
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d requests=%d non2xx=%d sockerr=%d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(99), summary.requests,
    e.status, e.connect + e.read + e.write + e.timeout))
end
