"""`python -m sim`: run the simulated LM Studio server."""

import sys

from sim.cli import main

sys.exit(main())
