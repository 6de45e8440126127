"""Alembic migrations of the conversation store (run by ``dialogue.store.Store.open``)."""
