"""The process's seams to the outside world: outbound HTTP and subprocesses."""
