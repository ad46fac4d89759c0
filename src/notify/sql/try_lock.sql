SELECT pg_try_advisory_lock(hashtextextended('tagwarden-notify:' || $1, 0))
