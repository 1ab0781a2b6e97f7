-- wrk script for POST /predict: a population of returning uids with a share of new ones.
-- Settings come from the environment: WRK_USERS (returning uids, default 10000),
-- WRK_NEW_SHARE (share of requests from never-seen uids, default 0.0), WRK_RUN (uid namespace),
-- WRK_NEW_RUN (namespace of the new uids: a fresh one per run keeps them never seen).
local users = tonumber(os.getenv("WRK_USERS") or "10000")
local new_share = tonumber(os.getenv("WRK_NEW_SHARE") or "0")
local run = os.getenv("WRK_RUN") or "bench"
local new_run = os.getenv("WRK_NEW_RUN") or run
local features = os.getenv("WRK_FEATURES") or
  "[17.99,10.38,122.8,1001.0,0.1184,0.2776,0.3001,0.1471,0.2419,0.07871]"
local counter = 0
local threads = {}
-- thread_id is a global: setup() sets it in each thread's own state (a file-level local of
-- the same name would hide it, and every thread would send the same "new" uids).

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + thread_id * 7919)
end

function request()
  local uid
  counter = counter + 1
  if math.random() < new_share then
    uid = string.format("%s-new-%d-%d", new_run, thread_id, counter)
  else
    uid = string.format("%s-user-%d", run, math.random(0, users - 1))
  end
  local body = '{"uid":"' .. uid .. '","features":' .. features .. '}'
  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"errors":%d,"non_2xx":%d,' ..
    '"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
