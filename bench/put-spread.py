#!/usr/bin/env python3
"""PUT new immutable tags (a distinct tag and manifest per request) for bench/tlog.sh.

    put-spread.py HOST PORT SECONDS CONNECTIONS SPREAD PREFIX RUN CONFIG_DIGEST CONFIG_SIZE LAYER_DIGEST LAYER_SIZE

One thread per connection, each with one keep-alive connection. With SPREAD = 1
connection i writes PREFIX<i>, with SPREAD = 0 every connection writes PREFIX0.
Prints "REQUESTS_PER_SECOND ERRORS TOTAL P50_MS" (P50_MS: the median time of a
successful PUT, from sending the request to reading the whole answer). (wrk is not on every machine; the client's
own cost is the same for both spreads.)
"""
import http.client
import sys
import threading
import time

host, port, secs, conns, spread, prefix, run = sys.argv[1:8]
cfg_digest, cfg_size, layer_digest, layer_size = sys.argv[8:12]
secs, conns, port = float(secs), int(conns), int(port)
TEMPLATE = (
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
    '"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},'
    '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}],'
    '"annotations":{"org.opencontainers.image.version":"%%s"}}' % (cfg_digest, cfg_size, layer_digest, layer_size)
)
counts = [[0, 0] for _ in range(conns)]
latencies = [[] for _ in range(conns)]


def worker(i: int, deadline: float) -> None:
    repo = prefix + (str(i) if spread == "1" else "0")
    c = http.client.HTTPConnection(host, port, timeout=30)
    n = 0
    while time.monotonic() < deadline:
        n += 1
        tag = "%s.%d.%d" % (run, i, n)
        body = (TEMPLATE % tag).encode()
        try:
            sent = time.perf_counter()
            c.request("PUT", "/v2/%s/manifests/%s" % (repo, tag), body,
                      {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            r = c.getresponse()
            r.read()
            counts[i][0 if r.status == 201 else 1] += 1
            if r.status == 201:
                latencies[i].append(time.perf_counter() - sent)
        except OSError:
            counts[i][1] += 1
            c = http.client.HTTPConnection(host, port, timeout=30)


start = time.monotonic()
threads = [threading.Thread(target=worker, args=(i, start + secs)) for i in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
ok = sum(c[0] for c in counts)
errors = sum(c[1] for c in counts)
all_latencies = sorted(x for per in latencies for x in per)
p50 = all_latencies[len(all_latencies) // 2] * 1000 if all_latencies else 0.0
print("%.1f %d %d %.3f" % (ok / elapsed, errors, ok + errors, p50))
