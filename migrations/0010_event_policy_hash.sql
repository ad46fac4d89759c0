-- Every event names the policy that decided it: the hex sha256 of the effective rules
-- (`Policy::hash`). Events written before this migration have none. The per-repository
-- hash chain (0003) keeps its v1 encoding and does not cover this column; the
-- transparency log's leaf encoding does.
ALTER TABLE tag_events ADD COLUMN policy_hash text;
