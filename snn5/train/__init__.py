"""L4 training paradigms (siblings that do not import each other) and their shared pieces:
checkpoints and device choice."""
