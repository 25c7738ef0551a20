"""Alembic migrations of the cloud database, shipped inside the package so that installs can migrate."""
