SELECT pg_advisory_xact_lock_shared(k)
FROM unnest($1::bigint[]) WITH ORDINALITY AS u(k, n) ORDER BY n
