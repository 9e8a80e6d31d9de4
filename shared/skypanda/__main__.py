"""`python -m skypanda` is the `skypanda` command.

`python -m skypanda pilot ...` (how launchers start pilots) goes straight to the pilot: it
needs only the standard library, and importing the whole CLI (click, Flask, pydantic, the
stores) would triple the pilot's memory and slow its start.
"""

import sys

if sys.argv[1:2] == ["pilot"]:
    from skypanda.pilot.agent import main as pilot_main

    raise SystemExit(pilot_main(sys.argv[2:]))

from skypanda.cli.main import main

raise SystemExit(main())
