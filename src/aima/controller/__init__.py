"""The controller: the reconciler (sole writer of instance state), probes, ports, events."""
