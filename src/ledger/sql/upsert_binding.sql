INSERT INTO tag_bindings (repository, tag, digest, class, rule, bound_by)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (repository, tag) DO UPDATE SET
    first_bound_at  = CASE WHEN tag_bindings.digest = EXCLUDED.digest
                           THEN tag_bindings.first_bound_at ELSE now() END,
    bound_by        = CASE WHEN tag_bindings.digest = EXCLUDED.digest
                           THEN COALESCE(tag_bindings.bound_by, EXCLUDED.bound_by)
                           ELSE EXCLUDED.bound_by END,
    digest          = EXCLUDED.digest,
    class           = EXCLUDED.class,
    rule            = EXCLUDED.rule,
    last_changed_at = CASE WHEN tag_bindings.digest = EXCLUDED.digest
                             AND tag_bindings.deleted_at IS NULL
                           THEN tag_bindings.last_changed_at ELSE now() END,
    deleted_at      = NULL,
    retired_at      = NULL,
    retired_reason  = NULL,
    retired_by      = NULL
