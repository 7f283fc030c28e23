"""kubetrio's Calico-style pod networking: routed /32 pod addresses over veth pairs."""
