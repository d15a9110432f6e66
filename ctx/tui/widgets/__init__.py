"""Small widgets the dashboard's screens are built from."""
