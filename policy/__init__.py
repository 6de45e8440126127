"""Kefu: policy package."""
