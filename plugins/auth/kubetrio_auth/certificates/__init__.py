"""Joining nodes: bootstrap tokens, and the controllers of the CertificateSigningRequest API."""
