import sys

from gilfree.cli import guarded, main

sys.exit(guarded(main))
