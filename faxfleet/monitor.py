"""A Celery app for Flower: ``celery -A faxfleet.monitor flower``.

Flower only needs the broker; this app registers no tasks, so it can watch every
service of the fleet without importing any of them.
"""

from faxfleet.celery_app import make_celery

app = make_celery("faxfleet-monitor")
