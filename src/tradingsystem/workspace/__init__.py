"""Workspace API: a CRUD backlog of ideas, tasks and bugs."""
