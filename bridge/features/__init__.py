"""Optional features, one module each, started and stopped by the composition root."""
