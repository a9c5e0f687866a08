"""`python -m pipeline.cli`: the same as the `emostream` command."""

import sys

from pipeline.cli.main import main

sys.exit(main())
