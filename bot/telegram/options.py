"""The /imagine option syntax, for the Telegram front end: the core's one parser."""

from bot.core.options import OPTIONS_HELP, OptionError, parse_imagine

__all__ = ["OPTIONS_HELP", "OptionError", "parse_imagine"]
