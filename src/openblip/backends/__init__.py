"""Optional accelerated backends, each behind one small interface the model uses (cpu/)."""
