"""`python -m bench.fuzz --cases 1000 --seed 1`: see runner.py."""
import sys

from .runner import main

sys.exit(main())
