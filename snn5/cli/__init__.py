"""L7 command line."""
