-- wrk script for bench/run.sh, bench/writepath.sh and bench/tlog.sh: every request PUTs
-- a NEW immutable tag with its own small OCI image manifest, so each one is a new
-- binding (and, through tagwarden, a ledger write) and no two requests share a tag or a
-- digest.
--
--   wrk ... -s bench/put-tags.lua URL -- RUN CONFIG_DIGEST CONFIG_SIZE LAYER_DIGEST LAYER_SIZE [SPREAD]
--
-- URL is the repository's manifests endpoint (http://host:port/v2/<name>/manifests).
-- RUN is a positive integer distinct for every wrk run against the same repository;
-- the tags are RUN.THREAD.N (semantic versions, immutable under the default policy).
-- SPREAD = 1 spreads the writes over repositories: thread T writes <name>T instead of
-- <name> (run as many threads as connections for one repository per connection).
-- The config and layer blobs must already be in every repository written.

local threads = 0

function setup(thread)
    thread:set("thread_id", threads)
    threads = threads + 1
end

local run, base, template
local n = 0
local headers = {}

function init(args)
    run = assert(tonumber(args[1]), "RUN must be a number")
    base = wrk.path:gsub("/+$", "")
    if args[6] == "1" then
        base = base:gsub("/manifests$", thread_id .. "/manifests")
    end
    template = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        .. '"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
        .. args[2] .. '","size":' .. args[3] .. '},'
        .. '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"'
        .. args[4] .. '","size":' .. args[5] .. '}],'
        .. '"annotations":{"org.opencontainers.image.version":"%s"}}'
end

function request()
    n = n + 1
    local tag = string.format("%d.%d.%d", run, thread_id, n)
    headers["Content-Type"] = "application/vnd.oci.image.manifest.v1+json"
    return wrk.format("PUT", base .. "/" .. tag, headers, string.format(template, tag))
end
