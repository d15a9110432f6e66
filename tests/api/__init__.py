"""The operations table, its models and the client gateway (ctx/api, ctx/client.py)."""
