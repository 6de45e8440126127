"""Kefu: kefu package."""
