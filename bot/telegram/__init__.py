"""The Telegram front end: a thin python-telegram-bot layer over the core (bot.core)."""

from bot.telegram.app import TelegramFrontEnd

__all__ = ["TelegramFrontEnd"]
