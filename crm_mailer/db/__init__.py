"""Storage: models, engine, repositories and migrations."""
