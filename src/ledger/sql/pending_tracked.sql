SELECT pending_writes_tracked()
