-- Indexes for the audit reads (src/ledger/queries.rs), so that resolving a tag at an
-- instant, a tag's history, the tags of a digest and the filtered event feed are each
-- answered from an index however long the history grows.
--
-- The partial indexes hold only the events that can change what a tag names (every
-- action but 'refuse'); the queries spell out the same action lists so that the planner
-- can use them.

-- What a tag named at an instant; the event after a binding.
CREATE INDEX tag_events_binding_changes
    ON tag_events (repository, tag, at, id)
    WHERE action IN ('create', 'move', 'repush', 'adopt', 'warn', 'delete');

-- Every tag that was ever bound to a digest.
CREATE INDEX tag_events_bindings_by_digest
    ON tag_events (digest, repository, tag, at, id)
    WHERE action IN ('create', 'move', 'repush', 'adopt', 'warn');

-- The event feed, newest or oldest first, filtered by action or identity (by
-- repository: tag_events_by_repository, from 0003).
CREATE INDEX tag_events_by_action ON tag_events (action, id);
CREATE INDEX tag_events_by_identity ON tag_events (identity, id) WHERE identity IS NOT NULL;
