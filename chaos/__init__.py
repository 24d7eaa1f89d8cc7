"""The chaos suite: real exportd processes, a PostgreSQL cluster and an artifact
filesystem of the harness's own, faults injected while jobs drain, and a check of the
whole queue afterwards (`python -m chaos.run`; see chaos/README.md)."""
