"""embedder: text -> unit vectors over HTTP (local model or TEI), cached in Redis or in process."""
