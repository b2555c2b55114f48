"""Telegram trading signals: gateway, TP Capital API and Workspace API on PostgreSQL."""
