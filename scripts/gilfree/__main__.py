import sys

from .cli import guarded, main

sys.exit(guarded(main))
