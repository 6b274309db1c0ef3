"""`python -m lazarus` is the `lazarus` command."""

import sys

from lazarus.cli.main import main

sys.exit(main())
