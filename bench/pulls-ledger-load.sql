-- Fill a migrated, empty pull log with :rows synthetic pulls for bench/pulls-ledger.sh.
--
--   psql -v rows=10000000 -v days=30 -f bench/pulls-ledger-load.sql DATABASE_URL
--
-- The day partitions (the last :days days, UTC, up to today, and tomorrow's as
-- tagwarden keeps it) come from the migration's pull_log_ensure_partition. Then one
-- INSERT ... SELECT into the partitioned parent, in time order like the writer appends.
-- The shape:
--   2,000 repositories, teamNN/service-NNNN, skewed (floor(2000 * r^3)): the busiest
--     takes about 8 % of the pulls;
--   per repository the hot tags latest (45 %), main (15 %) and stable (8 %), 40 release
--     tags v1.N.0 (17 %, skewed towards low N), and child pulls by digest (15 %, the
--     amd64 or arm64 manifest of that day's latest);
--   a moving tag's digest changes every day, a release tag's never;
--   5,000 identities cluster-NNNN (skewed), 12 % anonymous; 35 % HEAD; 3 % 404 with
--     no digest.
-- The caller drops the secondary indexes first and recreates them afterwards.

\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET synchronous_commit = off;
SET jit = off;

SELECT pull_log_ensure_partition(d::date)
FROM generate_series(current_date - (:days - 1), current_date + 1, interval '1 day') AS d;

SELECT setseed(0.42);

INSERT INTO pull_log (at, repository, reference, digest, media_type, method, status,
                      identity, verified, remote_addr, user_agent, request_id)
SELECT at, repository, reference,
       CASE WHEN missing THEN NULL ELSE digest END,
       CASE WHEN missing THEN NULL WHEN child THEN 'application/vnd.oci.image.manifest.v1+json'
            ELSE 'application/vnd.oci.image.index.v1+json' END,
       CASE WHEN r_head < 0.35 THEN 'HEAD' ELSE 'GET' END,
       CASE WHEN missing THEN 404 ELSE 200 END,
       identity, identity IS NOT NULL AND NOT missing,
       '10.' || (cluster % 250) || '.' || (cluster / 250 % 250) || '.' || (i % 200 + 1),
       CASE WHEN cluster % 3 = 0 THEN 'containerd/v1.7.24' WHEN cluster % 3 = 1 THEN 'cri-o/1.31.2'
            ELSE 'docker/27.3.1 go/go1.22.7' END,
       md5(i::text)
FROM (
    SELECT i, at, repository, child, missing, cluster,
           CASE WHEN r_anon < 0.12 THEN NULL ELSE 'cluster-' || lpad(cluster::text, 4, '0') END AS identity,
           CASE WHEN child THEN child_digest ELSE tag END AS reference,
           CASE WHEN child THEN child_digest ELSE tag_digest END AS digest,
           r_head
    FROM (
        SELECT i, at, repository, tag, child, missing, cluster, r_anon, r_head,
               'sha256:' || encode(sha256(convert_to(
                   CASE WHEN tag LIKE 'v%' THEN repository || ':' || tag
                        ELSE repository || ':' || tag || '@' || day END, 'UTF8')), 'hex') AS tag_digest,
               'sha256:' || encode(sha256(convert_to(
                   repository || ':latest@' || day || CASE WHEN r_arch < 0.7 THEN '/amd64' ELSE '/arm64' END,
                   'UTF8')), 'hex') AS child_digest
        FROM (
            SELECT i,
                   now() - (:days - 1) * interval '1 day' + (i - 1) * ((:days - 1) * interval '1 day' / :rows)
                       + interval '1 second' AS at,
                   'team' || lpad((repo % 40)::text, 2, '0') || '/service-' || lpad(repo::text, 4, '0') AS repository,
                   CASE WHEN r_tag < 0.45 THEN 'latest' WHEN r_tag < 0.60 THEN 'main'
                        WHEN r_tag < 0.68 THEN 'stable'
                        WHEN r_tag < 0.85 THEN 'v1.' || floor(40 * r_ver * r_ver)::int || '.0'
                        ELSE 'latest' END AS tag,
                   r_tag >= 0.85 AS child,
                   r_miss < 0.03 AS missing,
                   floor(5000 * r_id * r_id)::int AS cluster,
                   r_anon, r_head, r_arch,
                   floor((i - 1)::float8 * (:days - 1) / :rows)::int AS day
            FROM (
                SELECT i, floor(2000 * power(random(), 3))::int AS repo, random() AS r_tag, random() AS r_ver,
                       random() AS r_miss, random() AS r_id, random() AS r_anon, random() AS r_head,
                       random() AS r_arch
                FROM generate_series(1, :rows::bigint) AS i
            ) r
        ) k
    ) d
) p;
