"""Checkpoints: the file format and the checks of every untrusted value it holds (`format`)."""
