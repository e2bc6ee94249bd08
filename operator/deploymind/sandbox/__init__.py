"""The embedded Kubernetes API emulator, the private Docker engine and `deploymind sandbox`."""
