-- Keep the history append-only in every session. Ordinary triggers are skipped while
-- session_replication_role is 'replica', a setting any superuser may choose for their
-- session, so 0001's triggers alone let such a session update, delete or truncate
-- tag_events. ENABLE ALWAYS makes them fire whatever the replication role.
ALTER TABLE tag_events ENABLE ALWAYS TRIGGER tag_events_no_update_or_delete;
ALTER TABLE tag_events ENABLE ALWAYS TRIGGER tag_events_no_truncate;
