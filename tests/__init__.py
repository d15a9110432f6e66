"""The test suite, one folder per layer of ctx (ingest, process, store, retrieve, assemble, observe, versions,
audit, api, daemon, cli, tui), and test_import_graph.py for the shape of the whole package. Shared fixtures
live in conftest.py; shared tools (a loopback upstream server, wait_until, the daemon driver, session-built
homes) in helpers.py."""
