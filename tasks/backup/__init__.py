"""Backups: the asset registry (what is backed up, how often, where, for how long) and the drivers that do it
(restic for paths and streams, pg_dump | restic for PostgreSQL). Plain typed functions; flows orchestrate them."""
