"""flowspec."""
