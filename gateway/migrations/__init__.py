"""Alembic migrations of the gateway's store; :class:`gateway.store.SqlStore` applies them at start-up."""
