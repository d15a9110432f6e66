"""Built-in plugins: registered through the same hooks third parties use."""
