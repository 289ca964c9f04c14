"""Linked accounts: accounts one person controls, linked with the confirmation of both."""
