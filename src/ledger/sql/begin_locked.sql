-- A write transaction with its locks: the part of the simple query of
-- Ledger::begin_write (src/ledger/open.rs) that takes them. Its statements run in one
-- implicit transaction, which the closing BEGIN turns into the write transaction,
-- locks included; the reads that follow run in it. When a statement fails (a lock
-- timeout), the rest is skipped. A simple query takes no parameters: the first
-- statement lists the lock calls, evaluated in the order written, on keys that
-- tagwarden computed, written in as integers.
SELECT LOCK_CALLS;
BEGIN
