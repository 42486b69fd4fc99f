"""SQLite adapters: the embedded one-machine default (one file, WAL mode)."""
