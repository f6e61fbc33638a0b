"""Background work run by arq workers (render tasks, the EDL compiler, cron)."""
