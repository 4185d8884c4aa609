import sys

from trellis2_worker.cli import main

sys.exit(main())
