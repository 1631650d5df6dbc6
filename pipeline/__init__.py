"""QPM Pre-screen: read advocacy providers' written policies and map them to Advocacy QPM indicators."""

__version__ = "0.1.0"
