"""Notifications: Apprise channels, message formatting, and the persistent outbox."""
