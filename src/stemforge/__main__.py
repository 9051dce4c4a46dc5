import sys

from stemforge.cli import main

sys.exit(main())
