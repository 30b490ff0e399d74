"""Helpers shared by every test folder: real services, real processes, free ports."""
