"""`python -m skypanda` is the `skypanda` command."""

from skypanda.cli.main import main

raise SystemExit(main())
