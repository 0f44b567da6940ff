-- POST a JSON body with wrk and print a machine-readable summary.
--
--   wrk -t1 -c32 -d10s --latency -s bench/wrk_post.lua URL -- BODY_FILE [API_KEY]
--
-- wrk measures each request up to the end of its response, so for a streamed (SSE) answer the
-- latency is the time to the last chunk. The last line printed starts with WRK_JSON and holds
-- requests, errors and latency percentiles in microseconds.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  -- init runs in every thread before wrk renders the request, so the body set here is used.
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  if args[2] ~= nil and args[2] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
