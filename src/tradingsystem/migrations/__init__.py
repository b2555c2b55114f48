"""Versioned SQL migrations, one folder per schema."""
