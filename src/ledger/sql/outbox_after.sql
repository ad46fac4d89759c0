SELECT o.txid::text::bigint AS txid, e.id, e.at, e.action, e.repository, e.tag, e.digest,
       e.previous_digest, e.class, e.rule, e.reason, e.identity, e.identity_verified,
       e.remote_addr, e.user_agent, e.request_id, e.detail, e.policy_hash
FROM notify_outbox o JOIN tag_events e ON e.id = o.event_id
WHERE (o.txid, o.event_id) > ($1::text::xid8, $2) AND o.txid < $3::xid8
ORDER BY o.txid, o.event_id LIMIT $4
