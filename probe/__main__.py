"""`python -m probe` is `llmgw probe`."""

import sys

from probe.cli import main

sys.exit(main())
