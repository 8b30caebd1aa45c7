"""Test and demo support: COG factories and local object-store servers (127.0.0.1 only)."""
