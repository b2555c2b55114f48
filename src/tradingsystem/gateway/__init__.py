"""Telegram Gateway: Telegram sources, durable journal and publisher to the TP Capital API."""
