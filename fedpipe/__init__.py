"""fedpipe: federated learning across markets whose data may not leave them."""

__version__ = "0.1.0"
