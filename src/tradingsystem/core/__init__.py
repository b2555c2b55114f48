"""Shared building blocks for every service: settings, database, logging, metrics, HTTP."""
