"""Background duties: each reads the event log after its own cursor (`workers.cursors`) and acts —
sending invitation e-mails, running bulk jobs, taking snapshots."""
