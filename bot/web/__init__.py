"""The admin web console: server-rendered pages over the same AdminConsole operations as
the chat commands (bot.web.console)."""

from bot.web.console import add_console_routes

__all__ = ["add_console_routes"]
