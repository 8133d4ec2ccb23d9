"""The web layer of the feedback app: FastAPI routes (auth, annotator pages, admin pages, REST API)."""
