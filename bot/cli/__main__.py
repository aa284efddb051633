"""`python -m bot.cli`: the same as the `selfiebooth` command."""

import sys

from bot.cli.commands import main

sys.exit(main())
