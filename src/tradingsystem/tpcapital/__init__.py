"""TP Capital API: authenticated ingest, exactly-once storage, signal parsing and queries."""
