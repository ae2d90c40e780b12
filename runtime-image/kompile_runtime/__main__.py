"""`python -m kompile_runtime`: the serving pod's entry point."""

import sys

from kompile_runtime.server import main

sys.exit(main())
