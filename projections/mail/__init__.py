"""Invitation e-mail: an event-driven mailer with its own position, exactly once per token."""
