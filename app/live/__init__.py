"""Live availability: streams going live and offline, viewer counts, new channels."""
