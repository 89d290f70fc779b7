"""``python -m discolib``: the ``discolib`` command (:func:`discolib.cli.main`)."""

import sys

from discolib.cli import main

if __name__ == "__main__":
    sys.exit(main())
