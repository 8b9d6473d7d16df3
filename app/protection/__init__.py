"""Protection of the model host, in the background: the pressure `governor`, the circuit
`breaker`, the `outage` diagnosis, the upstream `monitor` (active check and governor tick) and
the probe snapshots' reader (`probe_watch`). Nothing here runs a Redis call on the request path."""
