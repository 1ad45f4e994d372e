"""The index on disk: chunk storage and the manifest that describes it."""
