"""``python -m aggan`` (also what ``torchrun -m aggan`` runs)."""

import sys

from aggan.cli import main

sys.exit(main())
