"""Spreading a many-input job over workers: the engine seam (`engine`) and the Ray engine (`ray_engine`)."""
