SELECT e.id, e.at, e.action, e.repository, e.tag, e.digest, e.previous_digest, e.class,
       e.rule, e.reason, e.identity, e.identity_verified, e.remote_addr, e.user_agent,
       e.request_id, e.detail, e.policy_hash
FROM tag_events e LEFT JOIN notify_outbox o ON o.event_id = e.id
WHERE NOT EXISTS (SELECT 1 FROM log_leaves l WHERE l.event_id = e.id)
ORDER BY o.txid, e.id
