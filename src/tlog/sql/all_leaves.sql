SELECT l.leaf_index, l.event_id, l.hash, l.txid::text::bigint AS txid, e.id, e.at, e.action,
       e.repository, e.tag, e.digest, e.previous_digest, e.class, e.rule, e.reason, e.identity,
       coalesce(e.identity_verified, false) AS identity_verified, e.remote_addr, e.user_agent,
       e.request_id, e.detail, e.policy_hash
FROM log_leaves l LEFT JOIN tag_events e ON e.id = l.event_id ORDER BY l.leaf_index
