"""Signature checks and admin authentication."""
