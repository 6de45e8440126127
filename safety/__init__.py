"""Kefu: safety package."""
