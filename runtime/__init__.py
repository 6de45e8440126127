"""Kefu: runtime package."""
