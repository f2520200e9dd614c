"""``python -m study.cli ...`` is the ``study`` command (how a submitted Ray Job runs it)."""

import sys

from study.cli import main

sys.exit(main())
