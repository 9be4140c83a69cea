"""Log tasks: lossless rotation, compression, retention."""
