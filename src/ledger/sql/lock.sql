SELECT current_setting('transaction_read_only')
FROM (SELECT pg_advisory_xact_lock(k)
      FROM unnest($1::bigint[]) WITH ORDINALITY AS u(k, n) ORDER BY n) AS locked
