"""The service process: options, logging, the embedded store, the run loop."""
