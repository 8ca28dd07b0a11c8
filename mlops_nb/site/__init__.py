"""Tooling, not the runtime: the docs builder (`make docs`, the README) and the offline page renderer."""
