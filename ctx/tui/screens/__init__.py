"""The dashboard's screens: the dashboard itself, one trace, and the help."""
