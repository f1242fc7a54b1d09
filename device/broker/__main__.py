import sys

from device.broker.cli import main

sys.exit(main())
