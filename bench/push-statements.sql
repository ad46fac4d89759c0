-- The statements of one push of a new immutable tag on the `skip` path, for pgbench:
-- the announcement and its commit, the locks, the binding read, the accept (binding,
-- references, pending write cleared, event) and the commit. `:r` names a new tag each
-- time. pgbench reads `:name` inside string literals as a variable too, so no literal
-- here contains a colon (the digests are spelled `sha256_…`).
--
--   pgbench -n -M prepared -f bench/push-statements.sql -c 1 -T 8 DATABASE
--
-- on a database migrated by tagwarden; `ALTER TABLE pending_writes SET LOGGED` (and
-- back) compares the logged announcement with the unlogged one.
\set r random(1, 2000000000)
BEGIN;
SELECT * FROM pending_writes_announce('bench/app', ARRAY['t' || :r::text]::text[]);
COMMIT;
BEGIN;
SELECT pg_advisory_xact_lock(:r::int8), pg_advisory_xact_lock(:r::int8 + 7);
SELECT * FROM binding_unseen('bench/app', 't' || :r::text, true);
WITH bound AS (
INSERT INTO tag_bindings (repository, tag, digest, class, rule, bound_by)
VALUES ('bench/app', 't' || :r::text, 'sha256_' || md5(:r::text) || md5(:r::text), 'immutable', 'release', NULL)
ON CONFLICT (repository, tag) DO UPDATE SET digest = EXCLUDED.digest
), referenced AS (
    INSERT INTO manifest_references (repository, manifest_digest, referenced_digest, kind)
    SELECT 'bench/app', 'sha256_' || md5(:r::text) || md5(:r::text), d, k
    FROM unnest(ARRAY['sha256_' || md5(:r::text) || md5(:r::text),
                      'sha256_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
                      'sha256_b' || md5(:r::text)]::text[],
                ARRAY['manifest', 'config', 'layer']::text[]) AS u(d, k)
    ON CONFLICT DO NOTHING
), cleared AS (
    DELETE FROM pending_writes WHERE repository = 'bench/app' AND tag = 't' || :r::text
)
INSERT INTO tag_events (at, action, repository, tag, digest, previous_digest, class, rule,
                        reason, identity, identity_verified, remote_addr, user_agent,
                        request_id, detail, policy_hash)
VALUES (now(), 'create', 'bench/app', 't' || :r::text, 'sha256_' || md5(:r::text) || md5(:r::text),
        NULL, 'immutable', 'release', NULL, NULL, false, '127.0.0.1', 'wrk/4',
        'req-' || :r::text, NULL, 'abcdef0123456789')
RETURNING id;
COMMIT;
