"""The command line: the first front end of the core, and the admin's shell tool.

    selfiebooth [--config FILE] [--data-dir DIR] COMMAND ...

It only parses arguments (bot.cli.parser), reads files, calls the core
(bot.cli.commands) and prints the core's answers (bot.cli.output).
"""

from bot.cli.commands import main

__all__ = ["main"]
