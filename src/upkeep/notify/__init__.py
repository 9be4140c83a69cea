"""Notifications: delivery of one message to one Apprise channel, and the notification
the alerting side hands to the store's outbox.
"""

__all__ = ["channels", "message"]
