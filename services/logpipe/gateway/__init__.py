"""The gateway: public REST and WebSocket API, standard ingest protocols, access control."""
