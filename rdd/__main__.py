import sys

from rdd.cli import main

sys.exit(main())
