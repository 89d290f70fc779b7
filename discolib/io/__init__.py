"""Reading users' files (size-capped, never executed), images and videos; atomic writes."""
