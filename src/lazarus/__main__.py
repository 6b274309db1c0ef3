"""`python -m lazarus` is the `lazarus` command."""

from lazarus.cli.main import main

main()
