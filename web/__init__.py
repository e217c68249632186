"""HTTP surfaces of the app: the page, the OpenAI-compatible API, health and metrics."""
