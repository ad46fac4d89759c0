SELECT hash, rules, first_loaded_at, last_loaded_at, first_loaded_at AS loaded_at
FROM policy_versions WHERE hash = $1
