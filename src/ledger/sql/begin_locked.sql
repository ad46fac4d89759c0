-- A write transaction with its locks, in one round trip (see Ledger::begin_locked).
-- Sent as one simple query: its statements run in one implicit transaction, which the
-- closing BEGIN turns into the write transaction, locks included. When a statement
-- fails (a read-only server, a lock timeout), the rest is skipped and the connection
-- is left outside any transaction. A simple query takes no parameters: the second
-- statement lists the lock calls, evaluated in the order written, on keys that
-- tagwarden computed, written in as integers.
SELECT FROM tag_bindings WHERE false FOR UPDATE;
SELECT LOCK_CALLS;
BEGIN
