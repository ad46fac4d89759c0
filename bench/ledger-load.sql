-- Fill a migrated, empty ledger with :events synthetic events for bench/ledger.sh.
--
--   psql -v events=10000000 -f bench/ledger-load.sql DATABASE_URL
--
-- Set-based: one INSERT ... SELECT for the events, in id order, ids increasing with
-- time over two years (2024-01-01 to 2026-01-01). The shape (per 10 million events;
-- the counts scale with :events):
--   2,000 repositories, teamNN/service-NNNN;
--   hot moving tags: `latest` of the 20 busiest repositories, 60,000 events for the
--     busiest down to 15,600 (create, moves, now and then a move back to a release,
--     a warn);
--   moving tags latest, main, stable, dev, nightly in every repository, 11,400 events
--     for the busiest down to a few (dev is deleted in a tenth of the repositories);
--   150 semver release tags per repository (immutable): create (adopt for the oldest),
--     a third re-pushed, an eighth with a refused overwrite later;
--   100 signature tags sha256-<hex>.sig per repository (exempt), a quarter deleted;
--   short-lived pr-N tags (moving, 10 events each: create, 8 moves, delete) fill the
--     rest, in busy repositories more than in quiet ones.
-- Digests are sha256 hex of a name: a release digest per (repository, version), a build
-- digest per moving-tag event; moving tags point at a release every 25th move, so a
-- release digest is named by its own tag and by moving tags. hash and prev_hash hold
-- 32-byte sha256 values (not a verifiable chain). Then tag_bindings (each tag's last
-- change, from the events) and chain_heads (each repository's last event).
--
-- The caller drops the secondary indexes first and recreates them afterwards: this file
-- only inserts. The bindings and chain heads are derived through the event indexes, so
-- those statements are in the second part, run after the indexes exist (psql variable
-- :part = events or derived).

\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET work_mem = '1GB';
SET temp_buffers = '512MB';
SET synchronous_commit = off;
SET jit = off;

-- Uniform in [0, 1) from an integer and a seed. The functions below are STABLE, not
-- IMMUTABLE, because text || integer is: so the planner inlines them.
CREATE FUNCTION pg_temp.rnd(bigint, bigint) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ((hashint8extended($1, $2) & 2147483647)::float8 / 2147483648.0);

CREATE FUNCTION pg_temp.repo(int) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN 'team' || lpad(($1 % 40)::text, 2, '0') || '/service-' || lpad($1::text, 4, '0');

CREATE FUNCTION pg_temp.hex(text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN encode(sha256(convert_to($1, 'UTF8')), 'hex');

-- The digest of release v of repository r, and of build j of a moving tag.
CREATE FUNCTION pg_temp.rel(int, int) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN 'sha256:' || pg_temp.hex('rel:' || $1 || ':' || $2);

CREATE FUNCTION pg_temp.bld(int, text, int) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN 'sha256:' || pg_temp.hex('bld:' || $1 || ':' || $2 || ':' || $3);

\if :{?part}
\else
\set part events
\endif

SELECT :'part' = 'events' AS load_events \gset

\if :load_events

-- Every tag: kind (1 hot, 2 moving, 3 release, 4 signature, 5 pr), repository number r,
-- name, events n, the positions of its first and last event in [0, 1), whether its last
-- event deletes it, and for releases: re-pushed (rp), a refused overwrite (rf), version v.
CREATE TEMP TABLE bench_tags (
    kind smallint NOT NULL,
    r    int      NOT NULL,
    tag  text     NOT NULL,
    n    int      NOT NULL,
    t0   float8   NOT NULL,
    t1   float8   NOT NULL,
    del  boolean  NOT NULL,
    rp   boolean  NOT NULL DEFAULT false,
    rf   boolean  NOT NULL DEFAULT false,
    v    int      NOT NULL DEFAULT 0
);

SELECT (:events)::float8 / 10000000 AS f,
       greatest(1, round(150 * (:events)::float8 / 10000000))::int AS versions,
       greatest(1, round(100 * (:events)::float8 / 10000000))::int AS signatures
\gset

-- Repositories start over the first year.
CREATE TEMP TABLE bench_repos AS
    SELECT r, pg_temp.rnd(r, 1) * 0.5 AS start FROM generate_series(0, 1999) r;

-- Hot tags.
INSERT INTO bench_tags (kind, r, tag, n, t0, t1, del)
SELECT 1, k, 'latest', greatest(2, round(:f * 60000 / (1 + 0.15 * k)))::int,
       pg_temp.rnd(k, 2) * 0.02, 1.0, false
FROM generate_series(0, 19) k;

-- Moving tags of every repository.
INSERT INTO bench_tags (kind, r, tag, n, t0, t1, del)
SELECT 2, b.r, w.tag, greatest(1, round(:f * 7600 * w.weight / (1 + b.r / 40.0)))::int,
       b.start, 1.0, w.tag = 'dev' AND b.r % 10 = 3
FROM bench_repos b
CROSS JOIN (VALUES ('latest', 1.0), ('main', 1.5), ('stable', 0.3), ('dev', 1.2), ('nightly', 0.5))
    AS w(tag, weight)
WHERE NOT (w.tag = 'latest' AND b.r < 20);

-- Releases, in version order over the repository's life.
INSERT INTO bench_tags (kind, r, tag, n, t0, t1, del, rp, rf, v)
SELECT 3, b.r, (v / 50 + 1) || '.' || (v / 10 % 5) || '.' || (v % 10),
       1 + (pg_temp.rnd(b.r * 1000 + v, 3) < 0.33)::int + (pg_temp.rnd(b.r * 1000 + v, 4) < 0.125)::int,
       b.start + (1 - b.start) * (v + pg_temp.rnd(b.r * 1000 + v, 5)) / :versions, 1.0, false,
       pg_temp.rnd(b.r * 1000 + v, 3) < 0.33, pg_temp.rnd(b.r * 1000 + v, 4) < 0.125, v
FROM bench_repos b CROSS JOIN generate_series(0, :versions - 1) v;

-- Signatures of releases, pushed just after the release.
INSERT INTO bench_tags (kind, r, tag, n, t0, t1, del, v)
SELECT 4, b.r, 'sha256-' || pg_temp.hex('rel:' || b.r || ':' || (s * :versions / :signatures)) || '.sig',
       1 + (pg_temp.rnd(b.r * 1000 + s, 6) < 0.25)::int,
       least(0.999, b.start + (1 - b.start) * ((s * :versions / :signatures) + 0.99) / :versions),
       1.0, pg_temp.rnd(b.r * 1000 + s, 6) < 0.25, s * :versions / :signatures
FROM bench_repos b CROSS JOIN generate_series(0, :signatures - 1) s;

-- Pull-request tags fill the rest: 10 events each, the last one possibly shorter.
SELECT (:events - sum(n))::bigint AS rest FROM bench_tags \gset
SELECT :rest >= 0 AS enough \gset
\if :enough
\else
\echo 'ledger-load.sql: :events is too small for the fixed part of the shape'
SELECT 1 / 0;
\endif
INSERT INTO bench_tags (kind, r, tag, n, t0, t1, del)
SELECT 5, floor(2000 * pg_temp.rnd(p, 7) ^ 2)::int, 'pr-' || p, least(10, :rest - 10 * p)::int,
       pg_temp.rnd(p, 8) * 0.99, 0, least(10, :rest - 10 * p) = 10
FROM generate_series(0, (:rest + 9) / 10 - 1) p;
UPDATE bench_tags SET t1 = least(0.9999, t0 + 0.005 + pg_temp.rnd(hashtext(tag)::bigint + r, 9) * 0.03)
WHERE kind = 5;

SELECT count(*) AS tags, sum(n) AS events FROM bench_tags;

-- The events, ordered by time: the position of event j of a tag. Moving tags spread
-- their events evenly from t0 to t1 with a little jitter; a release's re-push follows
-- ten minutes after its create and a refusal comes later at random; a signature's delete
-- too.
INSERT INTO tag_events (id, at, action, repository, tag, digest, previous_digest, class, rule,
                        reason, identity, identity_verified, remote_addr, user_agent, request_id,
                        detail, prev_hash, hash)
OVERRIDING SYSTEM VALUE
SELECT id,
       timestamptz '2024-01-01 00:00:00+00' + pos * interval '731 days',
       action, pg_temp.repo(r), tag,
       CASE WHEN kind IN (1, 2, 5) THEN
                CASE WHEN action = 'delete' AND kind <> 5 AND (j - 1) % 25 = 12
                         THEN pg_temp.rel(r, least(:versions - 1, floor(:versions * pos)::int))
                     WHEN action = 'delete' THEN pg_temp.bld(r, tag, j - 1)
                     WHEN kind <> 5 AND j % 25 = 12 THEN pg_temp.rel(r, least(:versions - 1, floor(:versions * pos)::int))
                     ELSE pg_temp.bld(r, tag, j) END
            WHEN kind = 3 THEN CASE WHEN action = 'refuse' THEN pg_temp.bld(r, tag, j) ELSE pg_temp.rel(r, v) END
            ELSE pg_temp.bld(r, 'sig', v) END,
       CASE WHEN j = 0 THEN NULL
            WHEN kind IN (1, 2, 5) THEN
                CASE WHEN kind <> 5 AND (j - 1) % 25 = 12 THEN pg_temp.rel(r, least(:versions - 1, floor(:versions * pos)::int))
                     ELSE pg_temp.bld(r, tag, j - 1) END
            WHEN kind = 3 THEN pg_temp.rel(r, v)
            ELSE pg_temp.bld(r, 'sig', v) END,
       CASE kind WHEN 3 THEN 'immutable' WHEN 4 THEN 'exempt' ELSE 'moving' END,
       CASE kind WHEN 3 THEN 'semver-releases' WHEN 4 THEN 'signatures-and-referrers' ELSE 'default' END,
       CASE action WHEN 'refuse' THEN 'immutable-tag-rebind' WHEN 'warn' THEN 'moving-tag-not-forward' END,
       CASE WHEN u < 0.02 THEN NULL
            WHEN u < 0.12 THEN 'user' || (id % 500) || '@example.com'
            ELSE 'robot$team' || lpad((r % 40)::text, 2, '0') || '+ci' END,
       u >= 0.02 AND u < 0.97,
       '10.' || (r % 250) || '.' || (id % 250) || '.' || (id / 250 % 250),
       (ARRAY['containerd/1.7.13', 'docker/24.0.7 go/go1.20.10 git-commit/311b9ff kernel/6.1.0 os/linux arch/amd64',
              'buildkit/v0.12.5', 'oras/1.1.0', 'skopeo/1.13.3', 'cosign/v2.2.3 (linux; amd64)'])[(1 + id % 6)::int],
       md5(id::text)::uuid::text,
       CASE action WHEN 'refuse' THEN jsonb_build_object('bound_digest', pg_temp.rel(r, v), 'status', 409)
                   WHEN 'warn' THEN jsonb_build_object('mode', 'warn') END,
       sha256(int8send(id - 1)), sha256(int8send(id))
FROM (
    SELECT row_number() OVER (ORDER BY pos, kind, r, tag, j) AS id, e.*,
           pg_temp.rnd(e.j + hashtext(e.tag)::bigint, e.r) AS u
    FROM (
        SELECT t.kind, t.r, t.tag, t.v, j,
               CASE WHEN t.kind = 3 THEN
                        CASE WHEN j = 0 THEN t.t0
                             WHEN j = 1 AND t.rp THEN t.t0 + 0.00001
                             ELSE t.t0 + 0.00002 + (0.9999 - t.t0) * pg_temp.rnd(t.r * 1000 + t.v, 10) END
                    WHEN t.kind = 4 THEN
                        CASE WHEN j = 0 THEN t.t0 ELSE t.t0 + (0.9999 - t.t0) * pg_temp.rnd(t.r * 1000 + t.v, 11) END
                    ELSE t.t0 + (t.t1 - t.t0) * (j + 0.9 * pg_temp.rnd(j, hashtext(t.tag)::bigint + t.r)) / t.n END AS pos,
               CASE WHEN j = 0 THEN CASE WHEN t.t0 < 0.03 AND t.kind IN (2, 3) THEN 'adopt' ELSE 'create' END
                    WHEN t.del AND j = t.n - 1 THEN 'delete'
                    WHEN t.kind = 3 THEN CASE WHEN j = 1 AND t.rp THEN 'repush' ELSE 'refuse' END
                    WHEN t.kind IN (1, 2) AND j % 97 = 50 THEN 'warn'
                    ELSE 'move' END AS action
        FROM bench_tags t CROSS JOIN LATERAL generate_series(0, t.n - 1) j
    ) e
) s;

SELECT setval(pg_get_serial_sequence('tag_events', 'id'), (SELECT max(id) FROM tag_events));

\else

-- Each tag's binding: its last change (the last event that is not a refusal), bound by
-- whoever made it, first bound at its first change, deleted if the last change deletes.
INSERT INTO tag_bindings (repository, tag, digest, class, rule, bound_by, first_bound_at,
                          last_changed_at, deleted_at)
SELECT k.repository, k.tag, l.digest, l.class, l.rule, l.identity, f.at, l.at,
       CASE WHEN l.action = 'delete' THEN l.at END
FROM (SELECT DISTINCT repository, tag FROM tag_events WHERE tag IS NOT NULL) k
CROSS JOIN LATERAL (
    SELECT at, action, digest, class, rule, identity FROM tag_events e
    WHERE e.repository = k.repository AND e.tag = k.tag
      AND e.action IN ('create', 'move', 'repush', 'adopt', 'warn', 'delete')
    ORDER BY at DESC, id DESC LIMIT 1
) l
CROSS JOIN LATERAL (
    SELECT at FROM tag_events e
    WHERE e.repository = k.repository AND e.tag = k.tag
      AND e.action IN ('create', 'move', 'repush', 'adopt', 'warn', 'delete')
    ORDER BY at, id LIMIT 1
) f;

INSERT INTO chain_heads (repository, last_id, hash)
SELECT k.repository, l.id, l.hash
FROM (SELECT DISTINCT repository FROM tag_bindings) k
CROSS JOIN LATERAL (
    SELECT id, hash FROM tag_events e WHERE e.repository = k.repository ORDER BY id DESC LIMIT 1
) l;

\endif
