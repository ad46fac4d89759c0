SELECT EXISTS (SELECT 1 FROM pending_writes WHERE repository = '' AND tag = '')
