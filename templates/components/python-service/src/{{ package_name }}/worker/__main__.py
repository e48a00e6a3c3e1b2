"""`python -m <package>.worker`."""

from . import main

main()
