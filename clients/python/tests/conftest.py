"""Makes ``quanta_client`` importable from this checkout without installing it."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
