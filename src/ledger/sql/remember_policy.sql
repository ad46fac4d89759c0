INSERT INTO policy_versions (hash, rules) VALUES ($1, $2)
ON CONFLICT (hash) DO UPDATE SET last_loaded_at = clock_timestamp()
