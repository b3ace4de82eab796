"""`python -m breakglass` runs the command with whichever interpreter runs it,
which is also the one the services are started with."""

import sys

from .cli import main

sys.exit(main())
