"""Analysis of stored results and of logs."""
