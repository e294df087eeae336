"""Build-time tools of the source tree: run from a checkout, never shipped, never imported by ``virtq``."""
