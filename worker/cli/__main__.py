"""`python -m worker.cli ...` (how `aftercare run` starts its parts)."""

import sys

from . import main

sys.exit(main())
