SELECT c.size, c.note || coalesce((SELECT string_agg(s.line || E'\n', '' ORDER BY s.witness)
                                   FROM log_cosignatures s WHERE s.size = c.size), '') AS note
FROM log_checkpoints c ORDER BY c.size DESC LIMIT 1
