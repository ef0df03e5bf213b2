"""``python3 -m converters.guest``: see converters.guest.job (what a cluster's conversion Job runs)."""

import sys

from converters.guest.job import main

sys.exit(main())
