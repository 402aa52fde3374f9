"""The service edge: HTTP, settings, signature checks and the job lifecycle."""
