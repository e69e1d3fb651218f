"""The built-in ``syft-rpc`` transport: request files served with syft-event, the
permission files in both SyftBox dialects, discovery of chat datasites, atomic file writes."""
