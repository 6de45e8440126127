"""Kefu: channels package."""
