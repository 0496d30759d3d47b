import sys

from nextvox.cli import main

sys.exit(main())
