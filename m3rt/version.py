"""m3rt's version: one place, read by the package, the CLI, the server and the export cache."""

__version__ = "0.1.0"
