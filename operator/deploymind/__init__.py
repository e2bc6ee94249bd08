"""DeployMind: a Kubernetes operator that deploys applications from Git onto hosts and keeps them healthy."""

__version__ = "0.1.0"
