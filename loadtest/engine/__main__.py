"""``python -m loadtest.engine``: the load engine's child process (see :mod:`loadtest.engine.roles`)."""

import sys

from loadtest.engine.roles import main

sys.exit(main())
