"""`python -m dnahnet` = `python -m dnahnet.train`."""

import sys

from dnahnet.train import main

sys.exit(main())
