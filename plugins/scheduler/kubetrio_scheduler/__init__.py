"""kubetrio's built-in scheduler plugins, registered through the same hook a third party uses."""
