"""Prefect tasks: thin, named for what they do, each wrapping a plain function in fedpipe."""
