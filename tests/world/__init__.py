"""The test world: real parts (Docker engine, sshd, moto, PostgreSQL, kubectl, helm, Trivy) started on loopback."""
