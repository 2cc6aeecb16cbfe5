import sys

from openblip.cli import main

sys.exit(main())
