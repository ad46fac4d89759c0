SELECT count(*) AS n, min(at) AS oldest FROM (
    SELECT e.at FROM notify_outbox o JOIN tag_events e ON e.id = o.event_id
    WHERE (o.txid, o.event_id) > ($1::text::xid8, $2) AND e.action = ANY($3)
    ORDER BY o.txid, o.event_id LIMIT $4) q
