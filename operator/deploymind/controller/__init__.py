"""The controller: Kopf handlers wake one actor per Deployment, which runs the reconcile steps and health ticks."""
