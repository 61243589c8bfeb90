"""`python -m ipvsd` is the same as the `ipvsd` console script."""

import sys

from ipvsd.cli import main

sys.exit(main())
