"""The test suite, one folder per layer of ctx (ingest, process, store, retrieve, assemble, observe, versions,
audit, daemon, cli, tui); shared fixtures live in conftest.py, shared tools (a loopback upstream server,
wait_until, the daemon driver, session-built homes) in helpers.py."""
