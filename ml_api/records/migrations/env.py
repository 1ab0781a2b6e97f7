"""Alembic environment: runs on the connection that ml_api.records.engine.upgrade_schema
hands over."""
from alembic import context

from ml_api.records import history_schema  # noqa: F401 (its tables join the metadata)
from ml_api.records.labels import Base  # the labels table joins schema.py's tables

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
