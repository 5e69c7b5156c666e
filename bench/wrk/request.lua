-- One request shape for every wrk run of bench/run.py, configured from the environment:
--   BENCH_KEY        the API key (sent as "Authorization: Bearer <key>")
--   BENCH_BODY_FILE  a JSON file: if set, the request is a POST of that body
-- At the end it prints one line "BENCH_RESULT {json}" that bench/run.py parses. "non_2xx" counts
-- every response outside 200-299 (wrk's own error count ignores 1xx-3xx).

local key = os.getenv("BENCH_KEY")
local body_file = os.getenv("BENCH_BODY_FILE")

if key then
  wrk.headers["Authorization"] = "Bearer " .. key
end
if body_file and body_file ~= "" then
  local handle = assert(io.open(body_file, "rb"))
  wrk.method = "POST"
  wrk.body = handle:read("*a")
  handle:close()
  wrk.headers["Content-Type"] = "application/json"
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non_2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local non_2xx_total = 0
  for _, thread in ipairs(threads) do
    non_2xx_total = non_2xx_total + thread:get("non_2xx")
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "non_2xx": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, non_2xx_total,
    errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
