"""The reconcile steps (source, build, release, health), one condition each, and the context they share."""
