"""The domain: plain async functions over the database, the media store and the job queue."""
