"""`python -m ipvsd` is the same as the `ipvsd` console script.

The Debian package's ``/usr/sbin/ipvsd`` runs this (``python -I -m ipvsd``).
The collector's thresholds are raised first, before the imports
(`ipvsd.gcpause.THRESHOLDS`).
"""

import gc
import sys

from ipvsd.gcpause import THRESHOLDS

gc.set_threshold(*THRESHOLDS)

from ipvsd.cli import main  # noqa: E402  (after the thresholds)

sys.exit(main())
