INSERT INTO log_leaves (leaf_index, event_id, txid, hash)
SELECT i, e, t::xid8, h FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bytea[]) AS u(i, e, t, h)
