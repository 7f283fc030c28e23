"""The client compatibility suite: a package, so its cluster fixture ends with its tests."""
