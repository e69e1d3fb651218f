"""The messaging core: outgoing and incoming delivery, the retry schedule, ordering and
announcing. Store- and transport-agnostic; features build on its public face."""
