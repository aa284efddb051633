"""Fakes of the platforms the bot talks to, for the tests."""
