"""Virtual schools running the real ClassOps firmware, and the demo that brings up a whole county."""
