"""The public status page: figures, the snapshot, its formats and routes."""
