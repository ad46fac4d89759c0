SELECT max(id) FROM tag_events
