import sys

from sdprobe.cli import main

sys.exit(main())
