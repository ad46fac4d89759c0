INSERT INTO policy_loads (hash) VALUES ($1)
