-- What each bound manifest references, so that a blob or child-manifest delete is
-- checked against every release with one indexed lookup instead of a walk of the
-- registry.
--
-- Rows are keyed by the manifest a tag binds (`manifest_digest`). An index's children
-- are recorded under it, and so are the children's config and layers: a digest is
-- reachable from a release when any row of that release's manifest names it.
--
-- `kind = 'manifest'` is the row of the bound manifest itself. It also marks the
-- references as recorded: a binding whose manifest has no such row (one bound before
-- this migration, or whose references could not be read yet) is read from the registry
-- before any delete of the repository is allowed.

CREATE TABLE manifest_references (
    repository        text NOT NULL,
    manifest_digest   text NOT NULL,
    referenced_digest text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('manifest', 'child', 'config', 'layer')),
    PRIMARY KEY (repository, manifest_digest, referenced_digest, kind)
);

-- Which bound manifests reach a digest.
CREATE INDEX manifest_references_by_referenced
    ON manifest_references (repository, referenced_digest);
