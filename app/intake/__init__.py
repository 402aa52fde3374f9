"""The job notification webhook: its schema and the order of checks."""
