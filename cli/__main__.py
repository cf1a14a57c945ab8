import sys

from coupled.cli.main import main

sys.exit(main())
