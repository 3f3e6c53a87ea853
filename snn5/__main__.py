"""``python -m snn5`` is the ``snn5`` command."""

import sys

from snn5.cli.main import main

sys.exit(main())
