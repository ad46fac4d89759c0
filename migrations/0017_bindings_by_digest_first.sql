-- The bindings of a digest, indexed by (digest, repository, tag) instead of (repository,
-- digest). With the repository first, this index also served `repository = $1` alone,
-- and on a table the planner had no statistics for yet (a new deployment, or a server
-- without autovacuum) it priced reading every binding of a repository the same as the
-- primary key's lookup of one tag, and chose it for the write path's binding read: a
-- plan each pooled connection then kept, reading the whole repository on every push.
-- With the digest first, only the primary key serves a tag's lookup; the tag last gives
-- a digest's bindings in tag order without a sort.
DROP INDEX tag_bindings_by_digest;
CREATE INDEX tag_bindings_by_digest ON tag_bindings (digest, repository, tag);
