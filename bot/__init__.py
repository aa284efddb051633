"""The front ends: a transport-agnostic core and thin adapters (command line now;
Telegram and Discord later)."""
