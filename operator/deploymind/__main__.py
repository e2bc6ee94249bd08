"""`python -m deploymind`."""

import sys

from deploymind.cli import main

sys.exit(main())
