"""Durable deployment history: records (what), store (SQL), recorder (non-blocking writes), http (read-only API)."""
