-- wrk script for bench/ledger.sh: each request GETs a random line of a file of paths
-- (with their query strings) with a bearer token, and checks the answer: status 200 and
-- a body that is not empty (a page with "items":[] counts as empty). At the end it
-- prints one line:
--   RESULT requests=N rps=R p50_us=... p90_us=... p99_us=... max_us=... non200=N empty=N ...
--
--   wrk -t2 -c8 -d20s -s bench/ledger-paths.lua http://127.0.0.1:5001 -- PATHS_FILE TOKEN

local threads = {}
local next_id = 0

function setup(thread)
    next_id = next_id + 1
    thread:set("thread_id", next_id)
    table.insert(threads, thread)
end

-- Per thread (globals, so that done() can read them with thread:get).
non200 = 0
empty = 0
checked = 0
local paths = {}

function init(args)
    if #args < 2 then
        error("usage: wrk ... -s ledger-paths.lua URL -- PATHS_FILE TOKEN")
    end
    for line in io.lines(args[1]) do
        if #line > 0 then
            paths[#paths + 1] = line
        end
    end
    if #paths == 0 then
        error("no paths in " .. args[1])
    end
    wrk.headers["Authorization"] = "Bearer " .. args[2]
    wrk.headers["Accept"] = "application/json"
    math.randomseed(os.time() * 1000 + (thread_id or 0))
end

function request()
    return wrk.format("GET", paths[math.random(#paths)])
end

function response(status, headers, body)
    checked = checked + 1
    if status ~= 200 then
        non200 = non200 + 1
    elseif body == nil or #body == 0 or string.find(body, '"items":[]', 1, true) then
        empty = empty + 1
    end
end

function done(summary, latency, requests)
    local bad, emp, n = 0, 0, 0
    for _, t in ipairs(threads) do
        bad = bad + t:get("non200")
        emp = emp + t:get("empty")
        n = n + t:get("checked")
    end
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.0f " ..
        "non200=%d empty=%d checked=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
        summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
        bad, emp, n, e.connect, e.read, e.write, e.timeout))
end
