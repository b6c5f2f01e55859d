"""End-to-end tests: the real `acd-router serve` process on its embedded store."""
