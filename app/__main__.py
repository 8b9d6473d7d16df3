"""`python -m app` is the `llmgw` command."""

import sys

from app.cli import main

sys.exit(main())
