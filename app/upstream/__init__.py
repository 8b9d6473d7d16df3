"""The model server's side: the chat `client` (payload, errors, outage classes) over the
gateway's own HTTP/1.1 `http_client` and `http_connection`, and the `relay` that streams its
SSE (`sse`) to the browser under the `stream_deadline`s."""
