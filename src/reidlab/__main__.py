"""``python -m reidlab``: the ``reidlab`` command, as ``torchrun -m reidlab`` starts it."""

import sys

from reidlab.cli import main

sys.exit(main())
