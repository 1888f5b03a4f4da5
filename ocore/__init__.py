"""The `ocore` command-line client for team management (talks to the REST API)."""
