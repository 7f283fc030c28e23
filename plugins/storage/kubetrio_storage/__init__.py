"""kubetrio's built-in storage driver: node-local directory volumes."""
