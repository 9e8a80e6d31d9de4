"""`python -m skypanda.pilot`: the pilot (as `skypanda pilot` and `python3 pilot.pyz`).

Standard library only.
"""

from skypanda.pilot.agent import main

if __name__ == "__main__":  # importing it (the zipapp's import check) runs nothing
    raise SystemExit(main())
