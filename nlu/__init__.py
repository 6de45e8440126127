"""Kefu: nlu package."""
