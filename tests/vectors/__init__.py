"""Shared test vectors of PROTOCOL.md (see README.md in this directory)."""
