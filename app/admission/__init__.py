"""Admission: who may chat now. The global and visitor windows, the in-flight leases and the
conversations' owners, decided in one Redis round trip (`lua/`, run by `redis_admitter` over
`redis_script` and `redis_wire`); the in-process `fallback` while Redis is away (`limiter` picks);
the `waiting_room` for a place the cap sheds; and the gateway's Redis clients (`redis_pool`,
`embedded_redis`)."""
