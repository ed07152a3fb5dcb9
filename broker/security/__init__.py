"""Security: authentication state and authorization (issue 12)."""
