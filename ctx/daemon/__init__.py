"""The local daemon: the API over a unix socket (or loopback TCP), job workers and the freshness scheduler."""
