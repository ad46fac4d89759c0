SELECT pg_try_advisory_lock(hashtextextended('tagwarden-tlog-integrator', 0))
