"""Integrations with other systems (each behind its own extra; the runtime never imports them)."""
