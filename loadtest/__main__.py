import sys

from loadtest.cli.group import main

sys.exit(main())
