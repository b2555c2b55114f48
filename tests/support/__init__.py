"""Test helpers: a real embedded PostgreSQL, real servers on loopback, and waits with deadlines."""
