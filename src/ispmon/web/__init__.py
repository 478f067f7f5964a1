"""The built-in dashboard (`/`), its saved views (`/views/`), live updates (`/events`) and the public
status page (`/status`): static files served from this package and thin routes over the services."""
