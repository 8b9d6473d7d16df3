"""The HTTP server: the Litestar `app` factory, the long-lived `services` and their lifespan,
the `routes`, the uvicorn `http_protocol`, the `static` widget, and each chat's telemetry
(`chat_telemetry`)."""
