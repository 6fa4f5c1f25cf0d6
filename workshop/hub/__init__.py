"""The hosted workshop: JupyterHub for a room of participants on one machine."""
