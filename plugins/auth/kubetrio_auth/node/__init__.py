"""The Node authorizer (``--authorization-mode=Node``): node agents reach only what their
pods need."""
