"""Hometown: geo-local live-stream recommendations over PostgreSQL + PostGIS."""

__version__ = "0.1.0"
