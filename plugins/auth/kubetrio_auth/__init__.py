"""kubetrio's built-in authentication, authorization and admission plugins."""
