"""``python -m rasteret_dask.cli``: the same as the ``rasteret-dask`` console script."""

import sys

from . import main

sys.exit(main())
