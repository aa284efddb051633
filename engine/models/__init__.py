"""Model families and (later) pipeline loading."""
