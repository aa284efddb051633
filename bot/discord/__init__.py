"""The Discord front end: slash commands and buttons over the same core as the command line.

It only translates: Discord interactions into core calls, the core's answers and job
updates into Discord messages. No rule of the service lives here.
"""

from bot.discord.frontend import DiscordFrontEnd

__all__ = ["DiscordFrontEnd"]
