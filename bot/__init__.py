"""The front ends: a transport-agnostic core (bot.core) and thin adapters over it: the
command line (bot.cli), Telegram (bot.telegram) and Discord (bot.discord)."""
