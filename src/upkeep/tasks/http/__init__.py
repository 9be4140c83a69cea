"""HTTP tasks: one request with asserted answer."""
