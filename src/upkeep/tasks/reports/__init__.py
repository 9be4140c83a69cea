"""Report tasks: make a report and deliver it (``report.send``)."""
