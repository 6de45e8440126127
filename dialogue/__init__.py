"""Kefu: dialogue package."""
