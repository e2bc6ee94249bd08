"""Ways to run a script on a host: local (sandbox/tests), ssh; one protocol."""
