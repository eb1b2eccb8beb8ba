"""`python -m m3rt.cli ...`: the `m3rt` command."""

import sys

from m3rt.cli import main

sys.exit(main())
