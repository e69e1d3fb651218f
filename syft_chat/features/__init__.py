"""Features on top of the messaging core: edits and reactions, groups, the contact
policy and the history views. Their rules are written here once, for every store."""
