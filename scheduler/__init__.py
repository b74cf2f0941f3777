"""The scheduler: the job, its lifecycle, the HTTP API, retries and notification."""
