"""Make the test-only protobuf writer (``pbwrite``) importable from these tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
