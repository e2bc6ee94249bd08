"""Commands as data: argv lists and host scripts, built without I/O and run by a transport."""
