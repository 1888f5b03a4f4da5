"""Invitation e-mail: an event-driven mailer with its own event cursor, exactly once per token."""
