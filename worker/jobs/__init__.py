"""The Celery app and thin tasks over plain functions (`periodic.py`); the beat schedule."""
