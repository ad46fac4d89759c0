SELECT b.repository, b.tag, b.digest, b.class, b.rule, b.bound_by, b.first_bound_at,
       b.last_changed_at, b.deleted_at, b.retired_at, b.retired_reason, b.retired_by,
       ARRAY(SELECT p.id FROM pending_writes p
             WHERE p.repository = $1 AND p.tag = $2) AS pending,
       EXISTS (SELECT 1 FROM tag_events e
               WHERE e.repository = $1 AND e.action = 'drift') AS drifted
FROM (SELECT 1) AS one
LEFT JOIN tag_bindings b ON b.repository = $1 AND b.tag = $2
