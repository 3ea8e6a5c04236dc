import sys

from gilfree.cli import main
from gilfree.guard import guarded

sys.exit(guarded(main))
