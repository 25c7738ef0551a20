"""Telling people: the in-app inbox and webhooks POSTed to outside systems."""

from cloud.notify.inbox import list_notifications, mark_read, notify_users
from cloud.notify.webhooks import WebhookPolicy, deliver_webhooks, queue_webhook

__all__ = ["WebhookPolicy", "deliver_webhooks", "list_notifications", "mark_read", "notify_users", "queue_webhook"]
