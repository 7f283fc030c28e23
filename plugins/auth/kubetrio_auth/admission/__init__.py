"""kube-apiserver's built-in admission plugins (PodSecurity, ...), as the ``admission``
plugin of the ``kubetrio-auth`` distribution: the core only calls the admission hooks."""
