"""History schema revisions, oldest first; each file is frozen once released (never import the live models)."""
