"""workforce launcher: worker instructions in, verified and integrated deliverables out."""
