"""`python -m signet_tools` is the `signet` command (how tools and tests start a child gateway)."""

import sys

from signet_tools.cli.main import main

sys.exit(main())
