"""Pure signal-processing functions (no I/O, no models)."""
