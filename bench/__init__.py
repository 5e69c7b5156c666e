"""The benchmark suite (``make bench``, docs/performance.md). Never imported by the service."""
