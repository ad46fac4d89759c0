-- Whether the server takes writes, before a write transaction takes its locks: refused
-- in a read-only transaction (a standby, a demoted primary), so that such a server
-- fails the write as an outage before it holds anything. Left out of a write that first
-- inserts its pending writes: that insert is refused the same way.
SELECT FROM tag_bindings WHERE false FOR UPDATE;
